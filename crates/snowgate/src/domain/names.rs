//! Jenkins-compatible names and URLs, exactly as the official plugin (6.2.0) builds them from
//! the build's `JOB_URL`, `BUILD_NUMBER` and stage.
use std::fmt;

use percent_encoding::percent_decode_str;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

/// The secret part of a callback URL: `pipeline_<uuid v4>` (122 random bits).
#[derive(Clone, PartialEq, Eq)]
pub struct CallbackToken(String);

impl CallbackToken {
    pub fn generate() -> Self {
        CallbackToken(format!("pipeline_{}", Uuid::new_v4()))
    }

    /// A token read back from the store.
    pub fn from_stored(s: String) -> Self {
        CallbackToken(s)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The lookup key kept in the store's index: a SHA-256 of the token, so the index
    /// lookup never compares the secret itself.
    pub fn lookup_hash(raw: &str) -> String {
        hex::encode(Sha256::digest(raw.as_bytes()))
    }

    /// Constant-time comparison with a presented token, of fixed-length digests so that the
    /// time does not depend on the length either.
    pub fn matches(&self, presented: &str) -> bool {
        Sha256::digest(self.0.as_bytes())
            .ct_eq(&Sha256::digest(presented.as_bytes()))
            .into()
    }

    /// `text` with every callback token in it (`pipeline_<uuid>`) replaced by its fingerprint:
    /// HTTP clients put request URLs, and so the acknowledgement's token, into their errors.
    pub fn scrub(text: &str) -> String {
        const PREFIX: &str = "pipeline_";
        const UUID_LEN: usize = 36;
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find(PREFIX) {
            let (before, from) = rest.split_at(at);
            out.push_str(before);
            let candidate = &from[PREFIX.len()..];
            let token_len = candidate
                .bytes()
                .take(UUID_LEN)
                .take_while(|b| b.is_ascii_hexdigit() || *b == b'-')
                .count();
            if token_len == UUID_LEN {
                out.push_str(&crate::telemetry::redact(&from[..PREFIX.len() + UUID_LEN]));
                rest = &candidate[UUID_LEN..];
            } else {
                out.push_str(PREFIX);
                rest = candidate;
            }
        }
        out.push_str(rest);
        out
    }

    /// A log-safe form: a short fingerprint of the digest.
    pub fn redacted(&self) -> String {
        crate::telemetry::redact(&self.0)
    }
}

impl fmt::Debug for CallbackToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CallbackToken({})", self.redacted())
    }
}

/// Stage task URL: the job URL with its last `/` replaced by `#<stage>/`
/// (`https://ci/job/folder/job/app/` + `Deploy` → `https://ci/job/folder/job/app#Deploy/`).
pub fn stage_task_url(job_url: &str, stage_path: &str) -> String {
    let base = job_url.strip_suffix('/').unwrap_or(job_url);
    format!("{base}#{stage_path}/")
}

/// The `/job/<name>` segments of a Jenkins job URL, each decoded once (Jenkins renders
/// `feature/x` as `feature%2Fx` in the job name and `feature%252Fx` in the URL).
pub fn job_segments(job_url: &str) -> Vec<String> {
    let path = match url::Url::parse(job_url) {
        Ok(u) => u.path().to_string(),
        Err(_) => job_url.to_string(),
    };
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let mut names = Vec::new();
    let mut i = 0;
    while i + 1 < parts.len() {
        if parts[i] == "job" {
            names.push(
                percent_decode_str(parts[i + 1])
                    .decode_utf8_lossy()
                    .into_owned(),
            );
            i += 2;
        } else {
            i += 1;
        }
    }
    names
}

/// The job's own item name, what the plugin sends as `orchestrationTaskName` in the
/// changeControl POST (`Job.getName()`): the last job segment decoded once. For a multibranch
/// branch job that is the branch item (`feature%2Fx`), not the multibranch project.
pub fn item_name(job_url: &str) -> String {
    job_segments(job_url).pop().unwrap_or_default()
}

/// Jenkins' full name of the job (`JOB_NAME`, `Job.getFullName()`): the item names joined with
/// `/` (`folder/app`, `mb/feature%2Fx`). changeInfo's `pipelineName` and the registration's
/// `fullName` carry it.
pub fn full_name(job_url: &str) -> String {
    job_segments(job_url).join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_tokens_are_scrubbed_from_error_texts() {
        let t = CallbackToken::generate();
        let text = format!(
            "error sending request for url (http://sn/api/changeControl/{}?toolId=1): refused; pipeline_ stays; pipeline_short",
            t.expose()
        );
        let scrubbed = CallbackToken::scrub(&text);
        assert!(!scrubbed.contains(t.expose()), "{scrubbed}");
        assert!(scrubbed.contains(&t.redacted()), "{scrubbed}");
        assert!(
            scrubbed.ends_with("pipeline_ stays; pipeline_short"),
            "{scrubbed}"
        );
        assert_eq!(CallbackToken::scrub("nothing here"), "nothing here");
    }

    #[test]
    fn tokens_match_only_themselves() {
        let t = CallbackToken::generate();
        assert!(t.matches(t.expose()));
        assert!(!t.matches(&t.expose()[..20]));
        assert!(!t.matches(""));
    }

    #[test]
    fn the_task_url_puts_the_stage_after_a_hash() {
        assert_eq!(
            stage_task_url("https://ci/job/folder/job/app/", "Deploy"),
            "https://ci/job/folder/job/app#Deploy/"
        );
        assert_eq!(
            stage_task_url("https://ci/job/app", "Deploy/Prod"),
            "https://ci/job/app#Deploy/Prod/"
        );
    }

    #[test]
    fn job_names_come_from_the_job_segments() {
        let url = "https://ci.example.com/job/folder/job/app/";
        assert_eq!(item_name(url), "app");
        assert_eq!(full_name(url), "folder/app");
        // A multibranch branch job: the branch item, and JOB_NAME with it.
        let mb = "https://ci.example.com/job/mb/job/feature%252Fx/";
        assert_eq!(item_name(mb), "feature%2Fx");
        assert_eq!(full_name(mb), "mb/feature%2Fx");
        assert_eq!(job_segments(mb), vec!["mb", "feature%2Fx"]);
        assert_eq!(item_name("https://ci/job/my%20app/"), "my app");
    }

    #[test]
    fn callback_tokens_are_long_random_and_compared_whole() {
        let a = CallbackToken::generate();
        let b = CallbackToken::generate();
        assert_ne!(a, b);
        assert!(a.expose().starts_with("pipeline_"));
        assert_eq!(a.expose().len(), "pipeline_".len() + 36);
        assert!(a.matches(a.expose()));
        assert!(!a.matches(&a.expose()[..20]));
        assert!(!format!("{a:?}").contains(&a.expose()[12..]));
    }
}
