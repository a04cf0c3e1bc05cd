//! `snowgate gates attach ID --file PATH | --link URL`: evidence for the gate's change request
//! (`POST /api/v1/gates/{id}/evidence`, README "Evidence on the change request"). The link's
//! flag is `--link`, since `--url` is snowgate's own URL in every `gates` command.
use std::path::{Path, PathBuf};

use base64::Engine as _;
use clap::Args;
use reqwest::Method;
use serde_json::{json, Value};

use super::client::{Api, CallError};
use super::{print_json, EXIT_OK, REQUEST_TIMEOUT};

/// The largest file snowgate takes (its `MAX_EVIDENCE`), checked here so a large file is not
/// read and sent only to be refused.
const MAX_FILE: u64 = crate::routes::evidence::MAX_EVIDENCE as u64;

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("evidence").required(true).args(["file", "link"]))]
pub struct AttachArgs {
    /// The gate's id.
    pub id: String,
    /// A file to attach to the change request (at most 5 MB).
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// A link to put on the change request as a work note (`--url` is snowgate's URL).
    #[arg(long, value_name = "URL")]
    pub link: Option<String>,
    /// The attachment's name (default: the file's name; for a link, `link`).
    #[arg(long)]
    pub name: Option<String>,
    /// The file's content type (default: from its extension, else application/octet-stream).
    #[arg(long)]
    pub content_type: Option<String>,
}

/// The content type of a file named `path`, from its extension.
fn content_type_of(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "log" => "text/plain",
        "md" => "text/markdown",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "xml" => "application/xml",
        "json" | "sarif" => "application/json",
        "yaml" | "yml" => "application/yaml",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        "tar" => "application/x-tar",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

/// The request body: text as `content`, any other bytes as `contentBase64`, a link as `url`.
pub fn evidence_body(args: &AttachArgs) -> Result<Value, String> {
    if let Some(url) = &args.link {
        let name = args.name.clone().unwrap_or_else(|| "link".into());
        return Ok(json!({"name": name, "url": url}));
    }
    let path = args.file.as_deref().ok_or("give --file or --link")?;
    let shown = path.display();
    let size = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {shown}: {e}"))?
        .len();
    if size > MAX_FILE {
        return Err(format!(
            "{shown} has {size} bytes; snowgate takes evidence of at most {MAX_FILE} bytes"
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let name = match &args.name {
        Some(n) => n.clone(),
        None => path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| format!("{shown} has no file name; give --name"))?,
    };
    let content_type = args
        .content_type
        .clone()
        .unwrap_or_else(|| content_type_of(path).to_string());
    Ok(match String::from_utf8(bytes) {
        Ok(text) if !content_type.starts_with("application/octet") => {
            json!({"name": name, "contentType": content_type, "content": text})
        }
        Ok(text) => json!({"name": name, "contentType": content_type,
            "contentBase64": base64::engine::general_purpose::STANDARD.encode(text.as_bytes())}),
        Err(e) => json!({"name": name, "contentType": content_type,
            "contentBase64": base64::engine::general_purpose::STANDARD.encode(e.as_bytes())}),
    })
}

/// Send the evidence; 202 `queued` and 200 `duplicate` both succeed.
pub(super) async fn attach(
    api: &Api,
    args: AttachArgs,
    json_output: bool,
) -> Result<u8, CallError> {
    let body = evidence_body(&args).map_err(CallError::Usage)?;
    let url = api.gate_url(&args.id, &["evidence"]);
    let answer: Value = api
        .call(Method::POST, url, Some(&body), REQUEST_TIMEOUT)
        .await?;
    if json_output {
        print_json(&answer);
    } else {
        let status = answer["status"].as_str().unwrap_or("?");
        let what = if status == "duplicate" {
            "already sent before (same SHA-256), not sent again"
        } else {
            "queued for the change request"
        };
        println!(
            "{} {status}: {what} (sha256 {})",
            answer["name"].as_str().unwrap_or("evidence"),
            answer["sha256"].as_str().unwrap_or("-")
        );
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(file: &Path) -> AttachArgs {
        AttachArgs {
            id: "x".into(),
            file: Some(file.to_path_buf()),
            link: None,
            name: None,
            content_type: None,
        }
    }

    #[test]
    fn text_goes_as_text_and_bytes_as_base64_with_a_type_from_the_extension() {
        let dir = tempfile::tempdir().unwrap();
        let xml = dir.path().join("junit.XML");
        std::fs::write(&xml, "<testsuite/>").unwrap();
        let b = evidence_body(&args(&xml)).unwrap();
        assert_eq!(
            b,
            json!({"name": "junit.XML", "contentType": "application/xml", "content": "<testsuite/>"})
        );
        let bin = dir.path().join("report.gz");
        std::fs::write(&bin, [0x1f, 0x8b, 0xff, 0x00]).unwrap();
        let b = evidence_body(&args(&bin)).unwrap();
        assert_eq!(b["contentType"], "application/gzip");
        assert_eq!(b["contentBase64"], "H4v/AA==");
        let mut a = args(&bin);
        a.name = Some("r.bin".into());
        a.content_type = Some("application/x-custom".into());
        let b = evidence_body(&a).unwrap();
        assert_eq!(
            (b["name"].as_str(), b["contentType"].as_str()),
            (Some("r.bin"), Some("application/x-custom"))
        );
        assert!(evidence_body(&args(&dir.path().join("absent")))
            .unwrap_err()
            .contains("cannot read"));
    }

    #[test]
    fn a_link_is_sent_as_a_url_and_unknown_extensions_are_octet_streams() {
        let a = AttachArgs {
            id: "x".into(),
            file: None,
            link: Some("https://sonar.example.com/".into()),
            name: None,
            content_type: None,
        };
        assert_eq!(
            evidence_body(&a).unwrap(),
            json!({"name": "link", "url": "https://sonar.example.com/"})
        );
        assert_eq!(
            content_type_of(Path::new("a.weird")),
            "application/octet-stream"
        );
        assert_eq!(
            content_type_of(Path::new("noext")),
            "application/octet-stream"
        );
    }
}
