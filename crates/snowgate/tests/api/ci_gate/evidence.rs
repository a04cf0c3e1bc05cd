//! `snowgate gates attach` against the real app in change mode and the simulator's Attachment
//! API: a text file, bytes, a duplicate, a link, and a gate without a CR.
use std::time::Duration;

use serde_json::Value;
use servicenow_sim::SimSettings;
use snowgate::api::GateView;
use snowgate::domain::ChangeRequest;

use super::{ci_run, jenkins_env};
use crate::change::{change_app_with, notes, until_notes};
use crate::cli::json_of;
use crate::helpers::*;

async fn until_attached(app: &TestApp, n: usize) -> Vec<servicenow_sim::AttachmentRecord> {
    for _ in 0..200 {
        if app.sim.attachments().len() >= n {
            // Give a duplicate the chance to show.
            tokio::time::sleep(Duration::from_millis(300)).await;
            return app.sim.attachments();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "fewer than {n} attachments: {}",
        app.sim.attachments().len()
    );
}

/// The gate's change request once snowgate knows its number and sys_id: the open answers as
/// soon as the gate is stored, and finding or creating the CR may take longer than that.
async fn until_cr_known(app: &TestApp, g: &GateView) -> ChangeRequest {
    for _ in 0..400 {
        if let Some(cr) = app.gate(g.id).await.change_request {
            if cr.number.is_some() && cr.sys_id.is_some() {
                return cr;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gate {} never learned its change request", g.id);
}

/// `gates open` in change mode from Jenkins' variables, for `environment`.
async fn open(app: &TestApp, environment: &str) -> GateView {
    let args = [
        "gates",
        "open",
        "--json",
        "--mode",
        "change",
        "--environment",
        environment,
    ];
    let run = ci_run(&app.address, &jenkins_env(), &args).await;
    assert_eq!(run.code, 0, "{}", run.output());
    json_of(&run)
}

#[tokio::test]
async fn files_and_links_from_the_command_line_reach_the_change_request_once() {
    let app = change_app_with(SimSettings::default(), |_| {}).await;
    let g = open(&app, "Production").await;
    let id = g.id.to_string();
    let cr = until_cr_known(&app, &g).await;
    let dir = tempfile::tempdir().unwrap();
    let xml = dir.path().join("junit.xml");
    std::fs::write(&xml, "<testsuite tests=\"3\"/>\n").unwrap();
    let bin = dir.path().join("scan.bin");
    let bytes: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    std::fs::write(&bin, &bytes).unwrap();
    let x = xml.to_str().unwrap();
    let run = ci_run(&app.address, &[], &["gates", "attach", &id, "--file", x]).await;
    assert_eq!(run.code, 0, "{}", run.output());
    assert!(run.stdout.contains("junit.xml queued"), "{}", run.stdout);
    let args = [
        "gates",
        "attach",
        &id,
        "--file",
        bin.to_str().unwrap(),
        "--name",
        "scan.dat",
        "--json",
    ];
    let run = ci_run(&app.address, &[], &args).await;
    assert_eq!(run.code, 0, "{}", run.output());
    assert_eq!(json_of::<Value>(&run)["status"], "queued");

    let mut got = until_attached(&app, 2).await;
    got.sort_by(|a, b| a.file_name.cmp(&b.file_name));
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0].file_name.as_str(), got[0].content_type.as_str()),
        ("junit.xml", "application/xml")
    );
    assert_eq!(got[0].content, b"<testsuite tests=\"3\"/>\n");
    assert_eq!(
        (got[1].file_name.as_str(), got[1].content_type.as_str()),
        ("scan.dat", "application/octet-stream")
    );
    assert_eq!(got[1].content, bytes, "bytes arrive unchanged");
    assert!(got
        .iter()
        .all(|a| Some(&a.table_sys_id) == cr.sys_id.as_ref()));

    // The same file again is a duplicate (exit 0), not a second attachment.
    let run = ci_run(&app.address, &[], &["gates", "attach", &id, "--file", x]).await;
    assert_eq!(run.code, 0, "{}", run.output());
    assert!(run.stdout.contains("duplicate"), "{}", run.stdout);
    assert_eq!(until_attached(&app, 2).await.len(), 2);
}

#[tokio::test]
async fn a_link_from_the_command_line_becomes_a_work_note_on_the_change_request() {
    let app = change_app_with(SimSettings::default(), |_| {}).await;
    let g = open(&app, "Production").await;
    let id = g.id.to_string();
    let cr = until_cr_known(&app, &g).await;
    let number = cr.number.clone().unwrap();
    let before = notes(&app, &number).len();
    let args = [
        "gates",
        "attach",
        &id,
        "--link",
        "https://sonar.example.com/shop",
        "--name",
        "sonar",
    ];
    let run = ci_run(&app.address, &[], &args).await;
    assert_eq!(run.code, 0, "{}", run.output());
    let n = until_notes(&app, &number, before + 1).await;
    assert!(
        n.iter()
            .any(|n| n.contains("evidence sonar: https://sonar.example.com/shop")),
        "{n:?}"
    );
}

#[tokio::test]
async fn attach_errors_are_the_apis_message_or_a_usage_error() {
    let app = change_app_with(SimSettings::default(), |_| {}).await;
    // Not change-controlled: the gate never gets a CR, and snowgate answers 409.
    let g = open(&app, "Staging").await;
    let id = g.id.to_string();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("a.txt");
    std::fs::write(&f, "x").unwrap();
    let run = ci_run(
        &app.address,
        &[],
        &["gates", "attach", &id, "--file", f.to_str().unwrap()],
    )
    .await;
    assert_eq!(run.code, 3, "{}", run.output());
    assert!(run.stderr.contains("no change request"), "{}", run.stderr);
    // A file that is not there is the command line's fault: nothing is sent.
    let absent = dir.path().join("absent.xml");
    let run = ci_run(
        &app.address,
        &[],
        &["gates", "attach", &id, "--file", absent.to_str().unwrap()],
    )
    .await;
    assert_eq!(run.code, 2, "{}", run.output());
    assert!(run.stderr.contains("cannot read"), "{}", run.stderr);
    // Neither --file nor --link: clap's usage error.
    let run = ci_run(&app.address, &[], &["gates", "attach", &id]).await;
    assert_eq!(run.code, 2, "{}", run.output());
    assert!(app.sim.attachments().is_empty());
}
