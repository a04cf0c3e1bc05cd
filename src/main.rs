//! The `snowgate` binary: CLI parsing and dispatch only.
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// jemalloc keeps the untouched parts of idle connections' buffers out of resident memory:
/// with thousands of open long-polls this is most of the footprint (see BENCHMARKS.md).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use snowgate::configuration::{parse_duration, NamedToken, Secret, ServiceNowAuth, Settings};
use snowgate::simulator::{self, SimSettings};
use snowgate::startup::{AppHandle, Application};
use snowgate::store::{GateStore, SqliteStore};
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
    /// Operator client: list, show, wait for, resume or abort gates on a running snowgate.
    #[command(after_help = snowgate::cli::EXIT_CODES)]
    Gates(snowgate::cli::GatesArgs),
    /// Check the configuration, the ServiceNow connection and the callback URL; exits 1 on any failure.
    Check {
        /// YAML configuration file (see config.example.yaml).
        #[arg(long, short, env = "SNOWGATE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Measure snowgate against its quality bars on this machine (run by hand; see BENCHMARKS.md).
    Bench(snowgate::bench::BenchArgs),
    /// Exit 0 when snowgate's /healthz answers 200, else 1 (for container health checks).
    Healthcheck(snowgate::cli::HealthcheckArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    // The client subcommands end with their own exit codes (see `snowgate gates --help`).
    let mut exit = ExitCode::SUCCESS;
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve { config } => serve(config).await,
            Command::Demo {
                port,
                sim_port,
                auto_approve,
                store,
            } => demo(port, sim_port, auto_approve, store).await,
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
                sim(settings).await
            }
            Command::Gates(args) => {
                exit = ExitCode::from(snowgate::cli::run_gates(args).await);
                Ok(())
            }
            Command::Bench(args) => {
                let _log = telemetry::init(Default::default(), "warn");
                let report = snowgate::bench::run(args).await?;
                println!("{report}");
                Ok(())
            }
            Command::Check { config } => {
                exit = check(config).await;
                Ok(())
            }
            Command::Healthcheck(args) => {
                exit = ExitCode::from(snowgate::cli::healthcheck(args).await);
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => exit,
        Err(e) => {
            eprintln!("snowgate: {e:#}");
            ExitCode::FAILURE
        }
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

async fn sim(settings: SimSettings) -> anyhow::Result<()> {
    let _log = telemetry::init(Default::default(), "info");
    let handle = simulator::start(settings).await?;
    println!("ServiceNow simulator listening on {}", handle.url());
    println!(
        "admin API: {}/__sim/changes, {}/__sim/requests",
        handle.url(),
        handle.url()
    );
    stop_signal().await;
    handle.stop().await;
    Ok(())
}

async fn demo(
    port: u16,
    sim_port: u16,
    auto_approve: Option<Duration>,
    store: Option<PathBuf>,
) -> anyhow::Result<()> {
    let _log = telemetry::init(Default::default(), "info");
    let sim_settings = SimSettings {
        bind: SocketAddr::from(([127, 0, 0, 1], sim_port)),
        auto_approve_after: auto_approve,
        ..SimSettings::default()
    };
    let (tool_id, sim_user, sim_password) = (
        sim_settings.tool_id.clone(),
        sim_settings.user.clone(),
        sim_settings.password.clone(),
    );
    let sim = simulator::start(sim_settings).await?;
    let listener = TcpListener::bind(("127.0.0.1", port))
        .map_err(|e| anyhow::anyhow!("cannot listen on 127.0.0.1:{port}: {e} (try --port)"))?;
    let api = format!("http://127.0.0.1:{}", listener.local_addr()?.port());

    let mut settings = Settings::default();
    settings.server.bind = listener.local_addr()?.to_string();
    settings.servicenow.instance_url = sim.url();
    settings.servicenow.tool_id = tool_id;
    // Basic auth serves both APIs: DevOps v1 and the Change Management API (change mode).
    settings.servicenow.auth = ServiceNowAuth::Basic;
    settings.servicenow.user = sim_user;
    settings.servicenow.password = Secret::new(sim_password);
    // Change mode decides by polling; poll often so the demo answers quickly.
    settings.servicenow.poll_interval = snowgate::configuration::Dur(Duration::from_secs(2));
    settings.change.environments = vec!["Production".into()];
    settings.callback.public_base_url = Some(format!("{api}/"));
    // Loopback only, so the demo may run without tokens.
    settings.auth.disabled = true;
    settings.auth.operator_tokens = Vec::<NamedToken>::new();
    let path = store.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("snowgate-demo-{}.db", std::process::id()))
    });
    settings.store.url = format!("sqlite://{}", path.display());
    let problems = settings.problems();
    if !problems.is_empty() {
        anyhow::bail!("demo configuration: {}", problems.join("; "));
    }
    let store: Arc<dyn GateStore> = Arc::new(SqliteStore::open(&path)?);
    let app = Application::build_with(settings, store, listener).await?;
    print_walkthrough(&api, &sim.url(), &path, auto_approve);
    stop_on_signal(app.handle());
    app.run_until_stopped().await?;
    sim.stop().await;
    println!("demo stopped; gates are kept in {}", path.display());
    Ok(())
}

fn print_walkthrough(api: &str, sim: &str, store: &std::path::Path, auto: Option<Duration>) {
    let store_path = store.display();
    let change_body = r#"{"mode":"change","environment":"Production","jobUrl":"http://jenkins.example.com/job/shop/job/deploy-app/","buildNumber":42,"stageName":"Release","buildUrl":"http://jenkins.example.com/job/shop/job/deploy-app/42/"}"#;
    let body = r#"{"jobUrl":"http://jenkins.example.com/job/shop/job/deploy-app/","buildNumber":42,"stageName":"Deploy to production","buildUrl":"http://jenkins.example.com/job/shop/job/deploy-app/42/"}"#;
    println!(
        r#"
snowgate demo: snowgate on {api}, simulated ServiceNow on {sim}
gates are stored in {store_path}; authentication is off (loopback only). Ctrl-C stops.

1. Open a gate for stage "Deploy to production" of build 42 (as a Jenkinsfile would):

   GATE=$(curl -s -X POST {api}/api/v1/gates -H 'Content-Type: application/json' \
     -d '{body}' | sed -E 's/^\{{"id":"([^"]+)".*/\1/'); echo $GATE

2. Wait for the decision (long-poll; it returns the moment ServiceNow decides):

   curl -s "{api}/api/v1/gates/$GATE/wait?timeout=300"; echo

3. In a second terminal, approve the change request in the simulated ServiceNow:

   curl -s -X POST {sim}/__sim/changes/latest/approve -H 'Content-Type: application/json' -d '{{"comments":"CAB approved"}}'; echo

   (or .../reject, .../cancel; list change requests with: curl -s {sim}/__sim/changes)

4. See the gate and its audit trail:

   curl -s {api}/api/v1/gates/$GATE; echo
   curl -s {api}/api/v1/gates/$GATE/events; echo

   An operator can also release or stop a held stage by hand:
   curl -s -X POST {api}/api/v1/gates/$GATE/abort -H 'Content-Type: application/json' -d '{{"reason":"wrong build"}}'

   The status page: {api}/ui

5. Change mode (Change Management API, the way Octopus Deploy gates): snowgate finds or
   creates the change request itself and polls it.

   CHG=$(curl -s -X POST {api}/api/v1/gates -H 'Content-Type: application/json' \
     -d '{change_body}' | sed -E 's/^\{{"id":"([^"]+)".*/\1/'); echo $CHG
   curl -s {sim}/__sim/chg/changes; echo          # the CR snowgate created, in state New
   curl -s -X POST {sim}/__sim/chg/changes/latest/state -H 'Content-Type: application/json' -d '{{"state":"Implement"}}'; echo
   curl -s "{api}/api/v1/gates/$CHG/wait?timeout=60"; echo   # approved at the next poll
"#
    );
    if let Some(d) = auto {
        println!("   (change requests are approved automatically after {d:?})");
    }
}
