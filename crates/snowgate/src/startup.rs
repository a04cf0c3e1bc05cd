//! `Application::build` wires the store, clients, routes and workers and binds the listener
//! (port 0 in tests); `main` and every test go through it.
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};

use crate::change_mode::ChangeMode;
use crate::configuration::Backend;
use crate::configuration::ServiceNowAuth;
use crate::configuration::Settings;
use crate::decisions::{Decider, Wakeups};
use crate::jenkins::JenkinsClient;
use crate::metrics::Metrics;
use crate::routes::{self, auth::Tokens};
use crate::servicenow::change::ChangeClient;
use crate::servicenow::DevOpsClient;
use crate::servicenow::RateLimiter;
use crate::state::AppState;
use crate::store::{GateStore, SqliteStore};
use crate::waiters::{ShutdownFlag, Waiters};
use crate::workers::outbox::Outbox;
use crate::workers::poller::Poller;
use crate::workers::reconcile::Reconciler;
use crate::workers::timers::TimeoutWorker;
use crate::workers::{self, Workers};

pub struct Application {
    port: u16,
    server: Server,
    shutdown: ShutdownFlag,
    shutdown_timeout: Duration,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

/// The store `store.url` names: a SQLite file, or a PostgreSQL database shared by replicas.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn GateStore>> {
    let s = &settings.store;
    Ok(
        match s.backend().map_err(|e| anyhow::anyhow!("store.url: {e}"))? {
            // The error's text names its cause already: no chain to repeat it.
            Backend::Sqlite(path) => {
                Arc::new(SqliteStore::open(&path).map_err(|e| anyhow::anyhow!("{e}"))?)
            }
            Backend::Postgres(url) => open_postgres(settings, url).await?,
        },
    )
}

#[cfg(feature = "postgres")]
async fn open_postgres(settings: &Settings, url: String) -> anyhow::Result<Arc<dyn GateStore>> {
    use crate::configuration::redact_url_password;
    use crate::store::{PgOptions, PostgresStore};
    let s = &settings.store;
    let store = PostgresStore::connect(PgOptions {
        url,
        password: (!s.password.is_empty()).then(|| s.password.expose().to_string()),
        pool_size: s.pool_size,
        connect_timeout: s.connect_timeout.0,
        statement_timeout: s.statement_timeout.0,
        ca_file: s.ca_file.clone(),
    })
    .await
    .map_err(|e| anyhow::anyhow!("store {}: {e}", redact_url_password(&s.url)))?;
    tracing::info!(url = %redact_url_password(&s.url), pool = s.pool_size, "PostgreSQL store ready");
    Ok(Arc::new(store))
}

/// A build without the `postgres` feature has no PostgreSQL client: say so at start-up, with
/// the setting that asked for one, rather than fail later.
#[cfg(not(feature = "postgres"))]
async fn open_postgres(_settings: &Settings, _url: String) -> anyhow::Result<Arc<dyn GateStore>> {
    anyhow::bail!(
        "store.url ({}) names a PostgreSQL database, but this snowgate was built without \
         PostgreSQL support (cargo feature `postgres`): use a sqlite:// store.url, or a build \
         with `--features postgres`",
        crate::configuration::env_name("store.url")
    )
}

impl Application {
    /// Validate settings, open the store, bind, and start the workers.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let problems = settings.problems();
        if !problems.is_empty() {
            anyhow::bail!("invalid configuration:\n  - {}", problems.join("\n  - "));
        }
        let store = open_store(&settings).await?;
        let listener = TcpListener::bind(&settings.server.bind)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.server.bind))?;
        Self::build_with(settings, store, listener).await
    }

    /// The steps of a start, in order; each is a function below.
    pub async fn build_with(
        settings: Settings,
        store: Arc<dyn GateStore>,
        listener: TcpListener,
    ) -> anyhow::Result<Application> {
        let local = listener.local_addr()?;
        if settings.auth.disabled && !local.ip().is_loopback() {
            anyhow::bail!(
                "auth.disabled is accepted only on a loopback address, not {local}: anyone who reaches the port could release production stages"
            );
        }
        let core = Core::new(&settings, store)?;
        let outbox = outbox(&settings, &core);
        let shutdown = core.waiters.shutdown().clone();
        let workers =
            workers::spawn_all(worker_deps(&settings, &core, &outbox), shutdown.clone()).await;
        log_gate_counts(core.store.as_ref()).await?;
        let state = app_state(&settings, core, outbox)?;
        let server = http_server(&settings, state, listener)?;
        Ok(Application {
            port: local.port(),
            server,
            shutdown,
            shutdown_timeout: settings.server.shutdown_timeout.0,
            workers,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn handle(&self) -> AppHandle {
        AppHandle {
            server: self.server.handle(),
            shutdown: self.shutdown.clone(),
        }
    }

    /// Serve until stopped through an [`AppHandle`].
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.shutdown.trigger();
        for w in self.workers {
            let _ = tokio::time::timeout(self.shutdown_timeout, w).await;
        }
        result
    }
}

/// What the routes and the workers share: the store and the outbound clients.
struct Core {
    store: Arc<dyn GateStore>,
    waiters: Arc<Waiters>,
    decider: Decider,
    metrics: Arc<Metrics>,
    servicenow: DevOpsClient,
    change: Option<Arc<ChangeMode>>,
    jenkins: Option<JenkinsClient>,
    /// `servicenow.max_requests_per_second`, shared by polls, reconciliation and pass-throughs.
    limiter: Arc<RateLimiter>,
}

impl Core {
    fn new(settings: &Settings, store: Arc<dyn GateStore>) -> anyhow::Result<Core> {
        // Every store call is bounded, whatever the backend does (a frozen database).
        let store: Arc<dyn GateStore> =
            Arc::new(crate::store::Bounded::new(store, settings.store.timeout.0));
        let waiters = Waiters::new();
        let metrics = Arc::new(Metrics::new());
        let freezes = Arc::new(crate::freezes::Freezes::new(settings, store.clone())?);
        let decider = Decider::new(
            store.clone(),
            waiters.clone(),
            Arc::new(Wakeups::default()),
            metrics.clone(),
            freezes,
        );
        let servicenow = DevOpsClient::new(&settings.servicenow)?.with_metrics(metrics.clone());
        // The Change API takes Basic or OAuth, not the DevOps tool token.
        let change = match settings.servicenow.auth {
            ServiceNowAuth::Token => None,
            _ => Some(Arc::new(ChangeMode::new(
                ChangeClient::new(&settings.servicenow)?.with_metrics(metrics.clone()),
                settings.change.clone(),
            )?)),
        };
        let jenkins = settings
            .jenkins
            .as_ref()
            .map(|j| JenkinsClient::new(j).map(|c| c.with_metrics(metrics.clone())))
            .transpose()?;
        let limiter = Arc::new(RateLimiter::per_second(
            settings.servicenow.max_requests_per_second,
        ));
        Ok(Core {
            store,
            waiters,
            decider,
            metrics,
            servicenow,
            change,
            jenkins,
            limiter,
        })
    }
}

fn outbox(settings: &Settings, core: &Core) -> Outbox {
    Outbox {
        store: core.store.clone(),
        decider: core.decider.clone(),
        servicenow: core.servicenow.clone(),
        settings: settings.outbox.clone(),
        step_mapping: settings.servicenow.step_mapping(),
        stage_events: settings.servicenow.stage_events,
        not_controlled: settings.servicenow.not_controlled,
        register_give_up_after: settings.servicenow.register_give_up_after.0,
        callback_base: settings
            .callback
            .public_base_url
            .clone()
            .unwrap_or_default(),
        poll_interval: settings.servicenow.poll_interval.0,
        jenkins: core.jenkins.clone(),
        change: core.change.clone(),
        claim: settings
            .store
            .lease_ttl
            .0
            .max(settings.servicenow.timeout.0 + Duration::from_secs(5)),
    }
}

fn worker_deps(settings: &Settings, core: &Core, outbox: &Outbox) -> Workers {
    Workers {
        outbox: outbox.clone(),
        poller: Poller {
            store: core.store.clone(),
            decider: core.decider.clone(),
            servicenow: core.servicenow.clone(),
            limiter: core.limiter.clone(),
            default_interval: settings.servicenow.poll_interval.0,
            change: core.change.clone(),
        },
        timers: TimeoutWorker {
            store: core.store.clone(),
            decider: core.decider.clone(),
        },
        reconciler: Reconciler {
            store: core.store.clone(),
            decider: core.decider.clone(),
            servicenow: core.servicenow.clone(),
            limiter: core.limiter.clone(),
        },
        store: core.store.clone(),
        waiters: core.waiters.clone(),
        decider: core.decider.clone(),
        limiter: core.limiter.clone(),
        max_requests_per_second: settings.servicenow.max_requests_per_second,
        lease_ttl: settings.store.lease_ttl.0,
        metrics: core.metrics.clone(),
    }
}

async fn log_gate_counts(store: &dyn GateStore) -> anyhow::Result<()> {
    let counts = store.count_by_state().await?;
    let summary: Vec<String> = counts.iter().map(|(s, n)| format!("{s}={n}")).collect();
    tracing::info!(gates = %summary.join(" "), "store loaded");
    Ok(())
}

fn app_state(
    settings: &Settings,
    core: Core,
    outbox: Outbox,
) -> anyhow::Result<web::Data<AppState>> {
    Ok(web::Data::new(AppState {
        store: core.store,
        decider: core.decider,
        waiters: core.waiters,
        outbox,
        tokens: Tokens::from_settings(&settings.auth),
        callback_auth: settings
            .callback
            .basic_auth
            .as_ref()
            .map(|b| (b.user.clone(), b.password.clone())),
        max_body: settings.server.max_body_bytes,
        jenkins: core.jenkins,
        metrics: core.metrics,
        change: core.change,
        default_mode: settings.servicenow.default_mode,
        limiter: core.limiter,
        ui: routes::ui::UiState::new(&settings.ui),
        supersede: crate::supersede::Supersede::new(&settings.supersede)?,
    }))
}

fn http_server(
    settings: &Settings,
    state: web::Data<AppState>,
    listener: TcpListener,
) -> std::io::Result<Server> {
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            // Request id and access log (callback tokens cut from the request line).
            .wrap(actix_web::middleware::from_fn(
                routes::request_id::request_id,
            ))
            .configure(routes::configure)
            .default_service(web::to(routes::error::not_found))
    })
    .disable_signals()
    .shutdown_timeout(settings.server.shutdown_timeout.0.as_secs().max(1))
    // Long-polls hold connections for minutes; keep-alive must not cut them.
    .client_request_timeout(Duration::from_secs(10))
    .listen(listener)?
    .run())
}

/// Stops a running application gracefully: open long-polls answer with the current gate,
/// the listener closes, in-flight requests (and their store writes) finish.
#[derive(Clone)]
pub struct AppHandle {
    server: ServerHandle,
    shutdown: ShutdownFlag,
}

impl AppHandle {
    pub async fn stop(&self) {
        self.shutdown.trigger();
        self.server.stop(true).await;
    }
}
