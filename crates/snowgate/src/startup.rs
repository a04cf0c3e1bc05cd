//! `Application::build` wires the store, clients, routes and workers and binds the listener
//! (port 0 in tests); `main` and every test go through it.
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};

use crate::change_mode::ChangeMode;
use crate::configuration::{redact_url_password, Backend};
use crate::configuration::{GateMode, ServiceNowAuth};
use crate::configuration::{Secret, Settings};
use crate::decisions::{Decider, Wakeups};
use crate::jenkins::JenkinsClient;
use crate::metrics::Metrics;
use crate::routes::{self, auth::Tokens};
use crate::servicenow::change::ChangeClient;
use crate::servicenow::DevOpsClient;
use crate::servicenow::RateLimiter;
use crate::store::{GateStore, PgOptions, PostgresStore, SqliteStore, StoreSignal};
use crate::waiters::{ShutdownFlag, Waiters};
use crate::workers::outbox::Outbox;
use crate::workers::poller::Poller;
use crate::workers::reconcile::Reconciler;
use crate::workers::timers::TimeoutWorker;

/// Shared state of every handler.
pub struct AppState {
    pub store: Arc<dyn GateStore>,
    pub decider: Decider,
    pub waiters: Arc<Waiters>,
    pub outbox: Outbox,
    pub tokens: Tokens,
    pub callback_auth: Option<(String, Secret)>,
    pub jenkins: Option<JenkinsClient>,
    pub metrics: Arc<Metrics>,
    pub max_body: usize,
    pub change: Option<Arc<ChangeMode>>,
    pub default_mode: GateMode,
    /// `servicenow.max_requests_per_second`, shared with the poller and reconciliation.
    pub limiter: Arc<RateLimiter>,
    /// The status page's sessions and failed-login limiter (in memory).
    pub ui: routes::ui::UiState,
}

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
            Backend::Sqlite(path) => Arc::new(SqliteStore::open(&path)?),
            Backend::Postgres(url) => {
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
                Arc::new(store)
            }
        },
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
        let port = local.port();
        // Every store call is bounded, whatever the backend does (a frozen database).
        let store: Arc<dyn GateStore> =
            Arc::new(crate::store::Bounded::new(store, settings.store.timeout.0));
        let waiters = Waiters::new();
        let wakeups = Arc::new(Wakeups::default());
        let metrics = Arc::new(Metrics::new());
        let decider = Decider::new(
            store.clone(),
            waiters.clone(),
            wakeups.clone(),
            metrics.clone(),
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
        let outbox = Outbox {
            store: store.clone(),
            decider: decider.clone(),
            servicenow: servicenow.clone(),
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
            jenkins: jenkins.clone(),
            change: change.clone(),
            claim: settings
                .store
                .lease_ttl
                .0
                .max(settings.servicenow.timeout.0 + Duration::from_secs(5)),
        };
        let shutdown = waiters.shutdown().clone();
        let limiter = Arc::new(RateLimiter::per_second(
            settings.servicenow.max_requests_per_second,
        ));
        let limiter_for_heartbeat = limiter.clone();
        let limiter_for_api = limiter.clone();
        let replica = format!(
            "{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let poller = Poller {
            store: store.clone(),
            decider: decider.clone(),
            servicenow: servicenow.clone(),
            limiter: limiter.clone(),
            default_interval: settings.servicenow.poll_interval.0,
            change: change.clone(),
        };
        let timers = TimeoutWorker {
            store: store.clone(),
            decider: decider.clone(),
        };
        let reconciler = Reconciler {
            store: store.clone(),
            decider: decider.clone(),
            servicenow: servicenow.clone(),
            limiter,
        };
        let mut workers = vec![
            tokio::spawn(outbox.clone().run(shutdown.clone())),
            tokio::spawn(poller.run(shutdown.clone())),
            tokio::spawn(timers.run(shutdown.clone())),
            tokio::spawn({
                let shutdown = shutdown.clone();
                let store = store.clone();
                let replica = replica.clone();
                let ttl = settings.store.lease_ttl.0;
                async move {
                    // With several replicas one of them reconciles; a store used by one
                    // process always grants the lease.
                    match store
                        .try_lease("reconcile", &replica, ttl.max(Duration::from_secs(60)))
                        .await
                    {
                        Ok(true) => {
                            reconciler.run(shutdown).await;
                        }
                        Ok(false) => {
                            tracing::info!("another replica is reconciling with ServiceNow")
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "reconciliation skipped: store unavailable")
                        }
                    }
                }
            }),
            tokio::spawn(share_rate_limit(
                store.clone(),
                replica.clone(),
                limiter_for_heartbeat,
                settings.servicenow.max_requests_per_second,
                settings.store.lease_ttl.0,
                shutdown.clone(),
            )),
        ];
        if let Some(signals) = store.listen().await {
            workers.push(tokio::spawn(wake_from_other_replicas(
                store.clone(),
                waiters.clone(),
                decider.clone(),
                signals,
            )));
        }
        let counts = store.count_by_state().await?;
        let summary: Vec<String> = counts.iter().map(|(s, n)| format!("{s}={n}")).collect();
        tracing::info!(gates = %summary.join(" "), "store loaded");

        let state = web::Data::new(AppState {
            store,
            decider,
            waiters,
            outbox,
            tokens: Tokens::from_settings(&settings.auth),
            callback_auth: settings
                .callback
                .basic_auth
                .as_ref()
                .map(|b| (b.user.clone(), b.password.clone())),
            max_body: settings.server.max_body_bytes,
            jenkins,
            metrics,
            change,
            default_mode: settings.servicenow.default_mode,
            limiter: limiter_for_api,
            ui: routes::ui::UiState::new(&settings.ui),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                // Request id and access log (callback tokens cut from the request line).
                .wrap(actix_web::middleware::from_fn(
                    routes::request_id::request_id,
                ))
                .route("/healthz", web::get().to(routes::health::healthz))
                .route("/readyz", web::get().to(routes::health::readyz))
                // The status page: HTML for people, outside the JSON API.
                .service(routes::ui::scope())
                .route("/metrics", web::get().to(routes::health::metrics))
                .service(
                    web::scope("/api/v1")
                        .route("/gates", web::post().to(routes::gates::open))
                        .route("/gates", web::get().to(routes::gates::list))
                        .route("/gates/{id}", web::get().to(routes::gates::get))
                        .route("/gates/{id}/wait", web::get().to(routes::gates::wait))
                        .route("/gates/{id}/events", web::get().to(routes::gates::events))
                        .route(
                            "/step-mappings",
                            web::post().to(routes::passthrough::step_mapping),
                        )
                        .route(
                            "/change-info",
                            web::get().to(routes::passthrough::change_info),
                        )
                        .route(
                            "/change-info/{number}",
                            web::put().to(routes::passthrough::update_change_info),
                        )
                        .route("/artifacts", web::post().to(routes::passthrough::artifacts))
                        .route("/packages", web::post().to(routes::passthrough::packages))
                        .route(
                            "/gates/{id}/resume",
                            web::post().to(routes::operator::resume),
                        )
                        .route("/gates/{id}/abort", web::post().to(routes::operator::abort))
                        .route(
                            "/gates/{id}/complete",
                            web::post().to(routes::operator::complete),
                        ),
                )
                // Any method, like the plugin's root action.
                .route(
                    "/sn-devops/{token}",
                    web::route().to(routes::callbacks::callback),
                )
                .default_service(web::to(routes::error::not_found))
        })
        .disable_signals()
        .shutdown_timeout(settings.server.shutdown_timeout.0.as_secs().max(1))
        // Long-polls hold connections for minutes; keep-alive must not cut them.
        .client_request_timeout(Duration::from_secs(10))
        .listen(listener)?
        .run();
        Ok(Application {
            port,
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

/// Replicas share `servicenow.max_requests_per_second`: each takes its share of the rate,
/// by how many replicas have been seen alive within the lease time.
async fn share_rate_limit(
    store: Arc<dyn GateStore>,
    replica: String,
    limiter: Arc<RateLimiter>,
    total: u32,
    ttl: Duration,
    shutdown: ShutdownFlag,
) {
    let every = (ttl / 3).max(Duration::from_millis(200));
    let mut last = 1;
    loop {
        match store.heartbeat(&replica, ttl).await {
            Ok(live) if live != last => {
                limiter.set_rate((total / live).max(1));
                tracing::info!(
                    replicas = live,
                    per_replica = (total / live).max(1),
                    "sharing the ServiceNow rate limit"
                );
                last = live;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait() => break,
        }
    }
}

/// Wake this replica's long-polls for decisions committed by others (PostgreSQL NOTIFY). After
/// a (re)connection every waited-on gate is checked again, so none hangs on a missed message.
async fn wake_from_other_replicas(
    store: Arc<dyn GateStore>,
    waiters: Arc<Waiters>,
    decider: Decider,
    mut signals: tokio::sync::mpsc::Receiver<StoreSignal>,
) {
    // Another replica's transition may have armed a poll, a deadline or outbox work that this
    // replica's workers take over if that replica dies. Waking them for every notification
    // made each of another replica's decisions cost three claim queries here as well (30,000
    // during a 10,000-decision burst); once per `TAKEOVER_WAKE_EVERY` is as prompt for a
    // takeover, and a notification inside the window is answered at its end.
    const TAKEOVER_WAKE_EVERY: Duration = Duration::from_millis(250);
    let wake = || {
        let w = decider.wakeups();
        w.timers.notify_one();
        w.poller.notify_one();
        w.outbox.notify_one();
    };
    use tokio::time::Instant;
    let mut last_wake: Option<Instant> = None;
    // When a wake held back by the window is due.
    let mut owed_at: Option<Instant> = None;
    loop {
        let received = match owed_at {
            Some(at) => tokio::time::timeout_at(at, signals.recv()).await.ok(),
            None => Some(signals.recv().await),
        };
        let Some(signal) = received else {
            // The window ended with a wake owed.
            wake();
            (last_wake, owed_at) = (Some(Instant::now()), None);
            continue;
        };
        let Some(signal) = signal else { break };
        match last_wake {
            Some(at) if at.elapsed() < TAKEOVER_WAKE_EVERY => {
                owed_at.get_or_insert(at + TAKEOVER_WAKE_EVERY);
            }
            _ => {
                wake();
                (last_wake, owed_at) = (Some(Instant::now()), None);
            }
        }
        let ids = match signal {
            StoreSignal::Decided(id) if waiters.is_waited(id) => vec![id],
            StoreSignal::Decided(_) => continue,
            StoreSignal::Resync => waiters.waited_ids(),
        };
        for id in ids {
            match store.gate(id).await {
                Ok(Some(gate)) if gate.state.is_terminal() => waiters.notify(&gate),
                Ok(_) => {}
                Err(e) => tracing::warn!(gate_id = %id, error = %e, "cannot read a decided gate"),
            }
        }
    }
}
