//! `snowgate freezes …`: list, declare and delete change freezes on a running snowgate.
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::json;

use super::client::{Api, CallError};
use super::render::table;
use super::{print_json, ApiArgs, EXIT_OK, REQUEST_TIMEOUT};
use crate::api::{FreezeList, FreezeView};

#[derive(Args, Debug)]
pub struct FreezesArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(subcommand)]
    pub command: FreezesCommand,
}

#[derive(Subcommand, Debug)]
pub enum FreezesCommand {
    /// List the change freezes active and upcoming, with the gates whose approval each holds.
    List,
    /// Declare a change freeze (operator token): gates it covers do not proceed while it is
    /// active, whatever ServiceNow decides.
    Add {
        #[arg(long)]
        name: String,
        /// RFC 3339, e.g. 2026-12-20T00:00:00Z.
        #[arg(long)]
        start: String,
        /// RFC 3339, after --start.
        #[arg(long)]
        end: String,
        #[arg(long)]
        reason: String,
        /// A glob on the full job name (repeatable; none: every job).
        #[arg(long = "job")]
        jobs: Vec<String>,
        /// An environment change-mode gates deploy to (repeatable; none: every one).
        #[arg(long = "environment")]
        environments: Vec<String>,
    },
    /// Delete a freeze declared through the API (operator token); the approvals it held
    /// proceed.
    Delete { id: String },
}

/// Run a `snowgate freezes …` command; the result is the process's exit code.
pub async fn run_freezes(args: FreezesArgs) -> u8 {
    let json_output = args.api.json;
    match freezes(args).await {
        Ok(code) => code,
        Err(e) => e.report(json_output),
    }
}

async fn freezes(args: FreezesArgs) -> Result<u8, CallError> {
    let api = Api::new(&args.api.url, args.api.token.clone())?;
    let json_output = args.api.json;
    let url = |tail: &[&str]| {
        let mut segments = vec!["api", "v1", "freezes"];
        segments.extend_from_slice(tail);
        api.url(&segments, &[])
    };
    match args.command {
        FreezesCommand::List => {
            let list: FreezeList = api.get(url(&[])).await?;
            if json_output {
                print_json(&list);
            } else if list.freezes.is_empty() {
                println!("no change freeze is active or upcoming");
            } else {
                print!("{}", freeze_table(&list.freezes, Utc::now()));
            }
        }
        FreezesCommand::Add {
            name,
            start,
            end,
            reason,
            jobs,
            environments,
        } => {
            let body = json!({"name": name, "start": start, "end": end, "reason": reason,
                              "jobs": jobs, "environments": environments});
            let f: FreezeView = api
                .call(Method::POST, url(&[]), Some(&body), REQUEST_TIMEOUT)
                .await?;
            if json_output {
                print_json(&f);
            } else {
                print!("{}", freeze_table(std::slice::from_ref(&f), Utc::now()));
            }
        }
        FreezesCommand::Delete { id } => {
            api.call::<()>(Method::DELETE, url(&[&id]), None::<&()>, REQUEST_TIMEOUT)
                .await?;
            if !json_output {
                println!("freeze {id} deleted");
            }
        }
    }
    Ok(EXIT_OK)
}

pub fn freeze_table(freezes: &[FreezeView], now: DateTime<Utc>) -> String {
    let all_or = |items: &[String]| {
        if items.is_empty() {
            "all".to_string()
        } else {
            items.join(",")
        }
    };
    let rows: Vec<Vec<String>> = freezes
        .iter()
        .map(|v| {
            let f = &v.freeze;
            vec![
                f.id.clone(),
                f.name.clone(),
                if v.active {
                    "active".into()
                } else if f.start > now {
                    "upcoming".into()
                } else {
                    "over".into()
                },
                f.start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                f.end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                all_or(&f.jobs),
                all_or(&f.environments),
                v.held_gates.len().to_string(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "NAME",
            "STATUS",
            "START",
            "END",
            "JOBS",
            "ENVIRONMENTS",
            "HELD",
        ],
        &rows,
    )
}
