//! The listening connection: PostgreSQL's LISTEN/NOTIFY carries each committed decision's gate
//! id to the other replicas, which wake their long-polls with it (SQLite has one process and
//! nothing to listen to).
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres_rustls::MakeRustlsConnect;
use uuid::Uuid;

use crate::store::StoreSignal;

/// The notification channel of decisions; a payload is `<origin> <gate id>`.
pub(super) const CHANNEL: &str = "snowgate_gate";

/// Forwards every committed decision's gate id, and a `Resync` after each (re)connection so
/// no long-poll hangs on a notification missed meanwhile.
pub(super) async fn listen_loop(
    config: Arc<tokio_postgres::Config>,
    tls: MakeRustlsConnect,
    origin: Arc<str>,
    tx: mpsc::Sender<StoreSignal>,
) {
    let mut delay = Duration::from_millis(200);
    loop {
        match config.connect(tls.clone()).await {
            Ok((client, conn)) => {
                delay = Duration::from_millis(200);
                let (msg_tx, msg_rx) = mpsc::unbounded_channel();
                let driver = tokio::spawn(drive(conn, msg_tx));
                if client
                    .batch_execute(&format!("LISTEN {CHANNEL}"))
                    .await
                    .is_ok()
                    && forward(msg_rx, &origin, &tx).await.is_err()
                {
                    return;
                }
                driver.abort();
                tracing::warn!("store: listening connection lost; reconnecting");
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "store: cannot open the listening connection");
            }
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Drive the connection, passing each notification's payload on, until it fails.
async fn drive<S, T>(
    mut conn: tokio_postgres::Connection<S, T>,
    msg_tx: mpsc::UnboundedSender<String>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut stream = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
    while let Some(m) = stream.next().await {
        match m {
            Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                if msg_tx.send(n.payload().to_string()).is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "store: the listening connection failed");
                break;
            }
        }
    }
}

/// Send a `Resync`, then each other replica's decision, until the connection ends (`Ok`) or
/// nobody listens any more (`Err`).
async fn forward(
    mut msg_rx: mpsc::UnboundedReceiver<String>,
    origin: &str,
    tx: &mpsc::Sender<StoreSignal>,
) -> Result<(), ()> {
    tx.send(StoreSignal::Resync).await.map_err(|_| ())?;
    while let Some(payload) = msg_rx.recv().await {
        // `<origin> <gate id>`; a bare id from a replica of an older
        // version during a rolling upgrade.
        let (from, id) = payload.split_once(' ').unwrap_or(("", &payload));
        if from == origin {
            continue;
        }
        if let Ok(id) = Uuid::parse_str(id) {
            tx.send(StoreSignal::Decided(id)).await.map_err(|_| ())?;
        }
    }
    Ok(())
}
