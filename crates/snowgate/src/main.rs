//! The `snowgate` binary: CLI parsing and dispatch only.
#[cfg(feature = "sim")]
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
#[cfg(feature = "sim")]
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};

/// jemalloc keeps the untouched parts of idle connections' buffers out of resident memory:
/// with thousands of open long-polls this is most of the footprint (see BENCHMARKS.md).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(feature = "sim")]
mod demo;

#[cfg(feature = "sim")]
use servicenow_sim::SimSettings;
#[cfg(feature = "sim")]
use snowgate::configuration::parse_duration;
use snowgate::configuration::Settings;
use snowgate::startup::{AppHandle, Application};
use snowgate::telemetry;

#[derive(Parser)]
#[command(
    name = "snowgate",
    version,
    about = "Puts Jenkins pipeline stages under ServiceNow change control.",
    long_about = "snowgate is a sidecar that holds a Jenkins pipeline stage until ServiceNow decides on \
its change request. A stage opens a gate (POST /api/v1/gates); snowgate registers it with \
ServiceNow DevOps, receives ServiceNow's callback on /sn-devops/<token>, stores the decision \
durably and releases every waiting long-poll at once. Operators can resume or abort a held \
stage by hand, with an audit trail.\n\nQuick start: `snowgate demo` runs snowgate with a \
simulated ServiceNow on loopback and prints curl lines to try it."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sidecar (configuration from --config and SNOWGATE__SECTION__KEY variables).
    Serve {
        /// YAML configuration file (see config.example.yaml).
        #[arg(long, short, env = "SNOWGATE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Run snowgate and a simulated ServiceNow together on loopback, with curl lines to try.
    #[cfg(feature = "sim")]
    Demo {
        /// Port of snowgate's API.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Port of the simulated ServiceNow instance.
        #[arg(long, default_value_t = 8090)]
        sim_port: u16,
        /// Approve every new change request automatically after this long (e.g. "20s").
        #[arg(long, value_parser = parse_duration)]
        auto_approve: Option<Duration>,
        /// SQLite file for the demo's gates (default: a fresh file in the temp directory).
        #[arg(long)]
        store: Option<PathBuf>,
    },
    /// Run the ServiceNow simulator alone (DevOps change-control API plus /__sim admin API).
    #[cfg(feature = "sim")]
    Sim {
        #[arg(long, default_value = "127.0.0.1:8090")]
        bind: SocketAddr,
        /// The sys_id of the Jenkins tool record the simulator accepts.
        #[arg(long, default_value = "1c219f7e8708f1508ca933383cbb3543")]
        tool_id: String,
        /// Basic-auth user accepted (v1 and v2).
        #[arg(long, default_value = "admin")]
        user: String,
        /// Basic-auth password accepted.
        #[arg(long, env = "SNOWGATE_SIM_PASSWORD", default_value = "admin-password")]
        password: String,
        /// DevOps tool token accepted on v2 (`sn_devops.DevOpsToken <tool_id>:<token>`).
        #[arg(long, env = "SNOWGATE_SIM_TOKEN", default_value = "sim-devops-token")]
        token: String,
        /// Only these stage names are under change control (repeatable; default: all).
        #[arg(long = "controlled-stage")]
        controlled_stages: Vec<String>,
        /// Approve every new change request automatically after this long.
        #[arg(long, value_parser = parse_duration)]
        auto_approve: Option<Duration>,
    },
    /// Client: open a gate from any CI (`gates open --wait`), list, show, wait for, resume or
    /// abort gates, attach evidence, on a running snowgate.
    #[command(after_help = snowgate::cli::EXIT_CODES)]
    Gates(snowgate::cli::GatesArgs),
    /// Operator client: list, declare or delete change freezes on a running snowgate.
    #[command(after_help = snowgate::cli::EXIT_CODES)]
    Freezes(snowgate::cli::FreezesArgs),
    /// Check the configuration, the ServiceNow connection and the callback URL; exits 1 on any failure.
    Check {
        /// YAML configuration file (see config.example.yaml).
        #[arg(long, short, env = "SNOWGATE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Exit 0 when snowgate's /healthz answers 200, else 1 (for container health checks).
    Healthcheck(snowgate::cli::HealthcheckArgs),
    /// Print a shell completion script (e.g. `snowgate completions bash > /etc/bash_completion.d/snowgate`).
    Completions {
        #[arg(value_enum)]
        shell: snowgate::cli::docs::Shell,
    },
    /// Print the man page (roff; `snowgate man | man -l -`).
    Man {
        /// Also write one page per subcommand into this directory (snowgate-gates-open.1, …).
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Generated from the command definition itself; no runtime needed.
    if let Some(exit) = docs(&cli.command) {
        return exit;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("snowgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(exit) => exit,
        Err(e) => {
            eprintln!("snowgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Run one command; the client subcommands end with their own exit codes (see `snowgate gates
/// --help`), the others succeed or fail.
async fn run(command: Command) -> anyhow::Result<ExitCode> {
    let done = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
    match command {
        Command::Serve { config } => done(serve(config).await),
        #[cfg(feature = "sim")]
        Command::Demo {
            port,
            sim_port,
            auto_approve,
            store,
        } => done(demo::demo(port, sim_port, auto_approve, store).await),
        #[cfg(feature = "sim")]
        Command::Sim {
            bind,
            tool_id,
            user,
            password,
            token,
            controlled_stages,
            auto_approve,
        } => {
            let settings = SimSettings {
                bind,
                tool_id,
                user,
                password,
                token,
                controlled_stages: (!controlled_stages.is_empty()).then_some(controlled_stages),
                auto_approve_after: auto_approve,
                ..SimSettings::default()
            };
            done(demo::sim(settings).await)
        }
        Command::Gates(args) => Ok(ExitCode::from(snowgate::cli::run_gates(args).await)),
        Command::Freezes(args) => Ok(ExitCode::from(snowgate::cli::run_freezes(args).await)),
        Command::Check { config } => Ok(check(config).await),
        Command::Healthcheck(args) => Ok(ExitCode::from(snowgate::cli::healthcheck(args).await)),
        // Answered in `main`, before the runtime started.
        Command::Completions { .. } | Command::Man { .. } => Ok(ExitCode::SUCCESS),
    }
}

/// `completions` and `man`, answered from the clap command itself; `None` for any other command.
fn docs(command: &Command) -> Option<ExitCode> {
    match command {
        Command::Completions { shell } => {
            snowgate::cli::docs::completions(&mut Cli::command(), *shell, &mut std::io::stdout());
            Some(ExitCode::SUCCESS)
        }
        Command::Man { out_dir } => {
            let written = snowgate::cli::docs::man(
                Cli::command(),
                &mut std::io::stdout(),
                out_dir.as_deref(),
            );
            Some(match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("snowgate: cannot write the man page: {e}");
                    ExitCode::FAILURE
                }
            })
        }
        _ => None,
    }
}

/// Raise the soft open-files limit to the hard one: every long-poll holds a socket.
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => {
            tracing::info!(open_files = n, "open-files limit");
            if n < 4096 {
                tracing::warn!(
                    open_files = n,
                    "the open-files limit is low: each waiting pipeline holds one connection; raise `ulimit -n`"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read or raise the open-files limit"),
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn stop_on_signal(handle: AppHandle) {
    tokio::spawn(async move {
        stop_signal().await;
        tracing::info!("stopping: answering open long-polls and finishing in-flight requests");
        handle.stop().await;
    });
}

async fn serve(config: Option<PathBuf>) -> anyhow::Result<()> {
    let settings = Settings::load(config.as_deref())?;
    let _log = telemetry::init(settings.log.format, &settings.log.level);
    raise_open_files_limit();
    let app = Application::build(settings.clone()).await?;
    tracing::info!(
        bind = %settings.server.bind,
        port = app.port(),
        instance = %settings.servicenow.instance_url,
        callback_base = %settings.callback.public_base_url.as_deref().unwrap_or(""),
        auth = if settings.auth.disabled { "disabled" } else { "bearer tokens" },
        "snowgate listening"
    );
    stop_on_signal(app.handle());
    app.run_until_stopped().await?;
    tracing::info!("snowgate stopped");
    Ok(())
}

/// Print `snowgate check`'s checklist; the checks themselves are in `snowgate::check`.
async fn check(config: Option<PathBuf>) -> ExitCode {
    let report = snowgate::check::run(config.as_deref()).await;
    for item in &report.items {
        println!("{item}");
    }
    println!("{}", report.summary());
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's own consistency checks over every subcommand (unique flags, valid groups), which
    /// otherwise run only when that subcommand is parsed.
    #[test]
    fn every_subcommand_is_a_consistent_clap_command() {
        Cli::command().debug_assert();
    }
}
