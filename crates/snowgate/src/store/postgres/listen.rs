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

/// The notification channel of decisions; a payload is `<origin> <gate id> <gate id> …`.
pub(super) const CHANNEL: &str = "snowgate_gate";

/// PostgreSQL refuses a `NOTIFY` payload of 8,000 bytes or more (its documentation of
/// `NOTIFY`); a batch's ids are split into payloads below this.
const PAYLOAD_LIMIT: usize = 7_900;

/// The notifications of one batch's decided gates: as few payloads as the limit allows.
pub(super) fn notify_payloads(origin: &str, ids: &[String]) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut current = String::new();
    for id in ids {
        if !current.is_empty() && current.len() + 1 + id.len() > PAYLOAD_LIMIT {
            payloads.push(std::mem::take(&mut current));
        }
        if current.is_empty() {
            current.push_str(origin);
        }
        current.push(' ');
        current.push_str(id);
    }
    if !current.is_empty() {
        payloads.push(current);
    }
    payloads
}

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
        // `<origin> <gate id> …`; a bare id from a replica of an older
        // version during a rolling upgrade.
        let (from, ids) = payload.split_once(' ').unwrap_or(("", &payload));
        if from == origin {
            continue;
        }
        for id in ids.split(' ').filter_map(|id| Uuid::parse_str(id).ok()) {
            tx.send(StoreSignal::Decided(id)).await.map_err(|_| ())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_of_ids_is_split_into_payloads_postgresql_accepts() {
        let origin = Uuid::new_v4().simple().to_string();
        let ids: Vec<String> = (0..1000).map(|_| Uuid::new_v4().to_string()).collect();
        let payloads = notify_payloads(&origin, &ids);
        assert!(payloads.len() > 1);
        let mut seen = Vec::new();
        for p in &payloads {
            assert!(p.len() < 8000, "{} bytes", p.len());
            let (from, rest) = p.split_once(' ').unwrap();
            assert_eq!(from, origin);
            seen.extend(rest.split(' ').map(str::to_string));
        }
        assert_eq!(seen, ids);
        assert!(notify_payloads(&origin, &[]).is_empty());
    }
}
