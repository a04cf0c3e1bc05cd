//! The status page's server-side sessions and its limiter of failed logins.
//!
//! Both live in this process's memory and nowhere else: a restart ends every session (operators
//! log in again) and forgets every failure; another replica knows neither. Both are bounded, so
//! a flood of logins or of wrong tokens costs a fixed amount of memory.
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

/// Random bytes in a session id: 256 bits, far beyond guessing.
const ID_BYTES: usize = 32;

/// SHA-256 of a session id's bytes: the map's key, so the process's memory holds no live
/// cookie, and a lookup's timing depends on a digest, never on the id itself.
type IdDigest = [u8; 32];

/// What the server knows about one login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// The configured name of the operator token used to log in (`auth.operator_tokens[].name`).
    pub operator: String,
    pub issued: Instant,
    pub expires: Instant,
    /// A short fingerprint of the token's digest, for log lines; never the token.
    pub token_fingerprint: String,
}

/// Sessions by id digest, with the order they were issued in. Every session lives equally
/// long, so the oldest issued is also the first to expire: expiry and the cap both take from
/// the front of `order`.
#[derive(Default)]
struct SessionMap {
    by_digest: HashMap<IdDigest, (u64, SessionInfo)>,
    order: BTreeMap<u64, IdDigest>,
    next_seq: u64,
}

impl SessionMap {
    fn remove(&mut self, digest: &IdDigest) -> Option<SessionInfo> {
        let (seq, info) = self.by_digest.remove(digest)?;
        self.order.remove(&seq);
        Some(info)
    }

    fn pop_oldest(&mut self) -> Option<SessionInfo> {
        let (_, digest) = self.order.pop_first()?;
        self.by_digest.remove(&digest).map(|(_, info)| info)
    }

    fn oldest(&self) -> Option<&SessionInfo> {
        let (_, digest) = self.order.first_key_value()?;
        self.by_digest.get(digest).map(|(_, info)| info)
    }
}

/// The live sessions of this process.
pub struct Sessions {
    map: Mutex<SessionMap>,
    ttl: Duration,
    cap: usize,
}

/// The first 8 bytes of SHA-256(`token`), hex: tells tokens apart in a log line without
/// revealing anything usable.
pub fn token_fingerprint(token: &str) -> String {
    hex::encode(&Sha256::digest(token.as_bytes())[..8])
}

/// The digest of a cookie value that has the shape of a session id (64 hex digits).
fn digest_of(id: &str) -> Option<IdDigest> {
    if id.len() != 2 * ID_BYTES {
        return None;
    }
    let bytes = hex::decode(id).ok()?;
    Some(Sha256::digest(bytes).into())
}

/// Locks are held for a few map operations that cannot panic half-way; a poisoned lock still
/// guards a consistent map.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Sessions {
    /// Sessions that last `ttl`; at most `cap` at once (the oldest goes first).
    pub fn new(ttl: Duration, cap: usize) -> Sessions {
        Sessions {
            map: Mutex::new(SessionMap::default()),
            ttl,
            cap: cap.max(1),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new session for `operator`, logged in with `token`; returns its id, the cookie's value:
    /// 32 bytes from the operating system's CSPRNG, hex.
    pub fn issue(&self, operator: &str, token: &str) -> String {
        self.issue_at(operator, token, Instant::now())
    }

    pub fn issue_at(&self, operator: &str, token: &str, now: Instant) -> String {
        let mut bytes = [0u8; ID_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let digest: IdDigest = Sha256::digest(bytes).into();
        let info = SessionInfo {
            operator: operator.to_string(),
            issued: now,
            expires: now + self.ttl,
            token_fingerprint: token_fingerprint(token),
        };
        let mut map = lock(&self.map);
        while map.oldest().is_some_and(|s| s.expires <= now) {
            map.pop_oldest();
        }
        while map.by_digest.len() >= self.cap {
            let Some(evicted) = map.pop_oldest() else {
                break;
            };
            tracing::info!(
                operator = %evicted.operator,
                cap = self.cap,
                "status page: the oldest session ended to make room for a new login"
            );
        }
        let seq = map.next_seq;
        map.next_seq += 1;
        map.by_digest.insert(digest, (seq, info));
        map.order.insert(seq, digest);
        hex::encode(bytes)
    }

    /// The live session `id` names; an expired one is forgotten and refused.
    pub fn get(&self, id: &str) -> Option<SessionInfo> {
        self.get_at(id, Instant::now())
    }

    pub fn get_at(&self, id: &str, now: Instant) -> Option<SessionInfo> {
        let digest = digest_of(id)?;
        let mut map = lock(&self.map);
        let (_, info) = map.by_digest.get(&digest)?;
        if info.expires <= now {
            map.remove(&digest);
            return None;
        }
        Some(info.clone())
    }

    /// End session `id` at once (logout); returns what it was, if it was live.
    pub fn revoke(&self, id: &str) -> Option<SessionInfo> {
        let digest = digest_of(id)?;
        lock(&self.map).remove(&digest)
    }

    /// Sessions held, expired ones not yet dropped included.
    pub fn len(&self) -> usize {
        lock(&self.map).by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Failed logins per client, over a sliding window: after `max_failures` failures within
/// `window`, every login from that client is refused until the oldest of them is `window` old.
pub struct LoginLimiter {
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
    max_failures: usize,
    window: Duration,
    /// Clients tracked at most; beyond it the client whose last failure is oldest is forgotten.
    cap: usize,
}

/// The key a client's failures are counted under: its IPv4 address (also when it arrives
/// IPv4-mapped), or the /64 network of an IPv6 address — one IPv6 host is normally handed a
/// whole /64 and could otherwise try 5 tokens from each of its 2^64 addresses.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

impl LoginLimiter {
    pub fn new(max_failures: usize, window: Duration, cap: usize) -> LoginLimiter {
        LoginLimiter {
            failures: Mutex::new(HashMap::new()),
            max_failures: max_failures.max(1),
            window,
            cap: cap.max(1),
        }
    }

    /// How long `client` must wait before it may try again; `None` when it may now.
    pub fn retry_after(&self, client: IpAddr) -> Option<Duration> {
        self.retry_after_at(client, Instant::now())
    }

    pub fn retry_after_at(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        let mut map = lock(&self.failures);
        let times = map.get_mut(&client_key(client))?;
        self.forget_old(times, now);
        if times.len() < self.max_failures {
            return None;
        }
        let oldest = *times.front()?;
        Some((oldest + self.window).saturating_duration_since(now))
    }

    /// Count a failed login of `client`.
    pub fn record_failure(&self, client: IpAddr) {
        self.record_failure_at(client, Instant::now())
    }

    pub fn record_failure_at(&self, client: IpAddr, now: Instant) {
        let key = client_key(client);
        let mut map = lock(&self.failures);
        if !map.contains_key(&key) && map.len() >= self.cap {
            map.retain(|_, times| times.back().is_some_and(|t| *t + self.window > now));
            if map.len() >= self.cap {
                let stalest = map
                    .iter()
                    .min_by_key(|(_, times)| times.back().copied())
                    .map(|(k, _)| *k);
                if let Some(k) = stalest {
                    map.remove(&k);
                }
            }
        }
        let times = map.entry(key).or_default();
        self.forget_old(times, now);
        times.push_back(now);
        // Only the newest `max_failures` decide whether the client is held back.
        while times.len() > self.max_failures {
            times.pop_front();
        }
    }

    fn forget_old(&self, times: &mut VecDeque<Instant>, now: Instant) {
        while times.front().is_some_and(|t| *t + self.window <= now) {
            times.pop_front();
        }
    }

    /// Clients whose failures are remembered.
    pub fn tracked(&self) -> usize {
        lock(&self.failures).len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);
    const TOKEN: &str = "operator-token-0123456789abcdef";

    #[test]
    fn a_session_id_is_64_random_hex_digits_and_never_the_token() {
        let s = Sessions::new(HOUR, 10);
        let a = s.issue("alice", TOKEN);
        let b = s.issue("alice", TOKEN);
        assert_ne!(a, b);
        for id in [&a, &b] {
            assert_eq!(id.len(), 64);
            assert!(id.bytes().all(|c| c.is_ascii_hexdigit()), "{id}");
            assert!(!id.contains(&hex::encode(TOKEN)));
        }
        assert_eq!(s.get(&a).unwrap().operator, "alice");
        assert_eq!(
            s.get(&a).unwrap().token_fingerprint,
            token_fingerprint(TOKEN)
        );
        assert!(!token_fingerprint(TOKEN).contains(&TOKEN[..4]));
    }

    #[test]
    fn an_id_never_issued_or_of_the_wrong_shape_is_no_session() {
        let s = Sessions::new(HOUR, 10);
        let real = s.issue("alice", TOKEN);
        let mut other = real.clone().into_bytes();
        other[0] = if other[0] == b'0' { b'1' } else { b'0' };
        for forged in [
            String::from_utf8(other).unwrap(),
            "0".repeat(64),
            real[..63].to_string(),
            format!("{real}0"),
            "z".repeat(64),
            String::new(),
        ] {
            assert_eq!(s.get(&forged), None, "{forged}");
        }
    }

    #[test]
    fn a_session_ends_at_its_expiry() {
        let s = Sessions::new(Duration::from_secs(10), 10);
        let t0 = Instant::now();
        let id = s.issue_at("alice", TOKEN, t0);
        let info = s.get_at(&id, t0 + Duration::from_secs(9)).unwrap();
        assert_eq!(info.issued, t0);
        assert_eq!(info.expires, t0 + Duration::from_secs(10));
        assert_eq!(s.get_at(&id, t0 + Duration::from_secs(10)), None);
        assert!(s.is_empty(), "an expired session is forgotten");
        assert_eq!(s.get_at(&id, t0), None, "and does not come back");
    }

    #[test]
    fn expired_sessions_are_dropped_when_the_next_one_is_issued() {
        let s = Sessions::new(Duration::from_secs(10), 100);
        let t0 = Instant::now();
        for _ in 0..5 {
            s.issue_at("alice", TOKEN, t0);
        }
        let live = s.issue_at("bob", TOKEN, t0 + Duration::from_secs(5));
        s.issue_at("carol", TOKEN, t0 + Duration::from_secs(11));
        assert_eq!(s.len(), 2);
        assert!(s.get_at(&live, t0 + Duration::from_secs(11)).is_some());
    }

    #[test]
    fn a_revoked_session_is_refused_at_once() {
        let s = Sessions::new(HOUR, 10);
        let id = s.issue("alice", TOKEN);
        let other = s.issue("bob", TOKEN);
        assert_eq!(s.revoke(&id).unwrap().operator, "alice");
        assert_eq!(s.get(&id), None);
        assert_eq!(s.revoke(&id), None, "only once");
        assert_eq!(s.get(&other).unwrap().operator, "bob", "others stay");
    }

    #[test]
    fn at_the_cap_the_oldest_session_makes_room() {
        let s = Sessions::new(HOUR, 3);
        let t0 = Instant::now();
        let ids: Vec<String> = (0..5u64)
            .map(|i| s.issue_at(&format!("op{i}"), TOKEN, t0 + Duration::from_secs(i)))
            .collect();
        assert_eq!(s.len(), 3);
        let now = t0 + Duration::from_secs(5);
        assert_eq!(s.get_at(&ids[0], now), None);
        assert_eq!(s.get_at(&ids[1], now), None);
        for id in &ids[2..] {
            assert!(s.get_at(id, now).is_some());
        }
        // A revoked session leaves no stale place in the eviction order.
        s.revoke(&ids[2]);
        let newest = s.issue_at("op5", TOKEN, now);
        assert_eq!(s.len(), 3);
        assert!(s.get_at(&ids[3], now).is_some());
        assert!(s.get_at(&newest, now).is_some());
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    #[test]
    fn five_failures_in_a_minute_hold_a_client_back_until_the_oldest_is_a_minute_old() {
        let l = LoginLimiter::new(5, Duration::from_secs(60), 100);
        let t0 = Instant::now();
        for i in 0..5u64 {
            assert_eq!(l.retry_after_at(ip(1), t0 + Duration::from_secs(i)), None);
            l.record_failure_at(ip(1), t0 + Duration::from_secs(i));
        }
        assert_eq!(
            l.retry_after_at(ip(1), t0 + Duration::from_secs(10)),
            Some(Duration::from_secs(50))
        );
        assert_eq!(l.retry_after_at(ip(2), t0), None, "other clients are not");
        // The first failure leaves the window: one more try.
        assert_eq!(l.retry_after_at(ip(1), t0 + Duration::from_secs(60)), None);
        l.record_failure_at(ip(1), t0 + Duration::from_secs(60));
        assert_eq!(
            l.retry_after_at(ip(1), t0 + Duration::from_secs(60)),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn failures_spread_over_more_than_a_minute_never_hold_a_client_back() {
        let l = LoginLimiter::new(5, Duration::from_secs(60), 100);
        let t0 = Instant::now();
        for i in 0..20u64 {
            let t = t0 + Duration::from_secs(i * 13);
            assert_eq!(l.retry_after_at(ip(1), t), None, "attempt {i}");
            l.record_failure_at(ip(1), t);
        }
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_key(mapped), ip(7));
    }

    #[test]
    fn the_limiter_forgets_old_clients_first_when_full() {
        let l = LoginLimiter::new(5, Duration::from_secs(60), 3);
        let t0 = Instant::now();
        for i in 0..3u8 {
            for _ in 0..5 {
                l.record_failure_at(ip(i), t0 + Duration::from_secs(u64::from(i)));
            }
        }
        assert_eq!(l.tracked(), 3);
        // Full of live entries: the client whose last failure is oldest goes.
        l.record_failure_at(ip(9), t0 + Duration::from_secs(10));
        assert_eq!(l.tracked(), 3);
        let now = t0 + Duration::from_secs(10);
        assert_eq!(l.retry_after_at(ip(0), now), None);
        assert!(l.retry_after_at(ip(1), now).is_some());
        assert!(l.retry_after_at(ip(2), now).is_some());
        // Once the window has passed, every stale entry is pruned for a newcomer.
        l.record_failure_at(ip(10), t0 + Duration::from_secs(200));
        assert_eq!(l.tracked(), 1);
    }
}
