//! Sessions: every piece of state a 2025 session carries besides the protocol machine.
//!
//! Owns: which caller owns each session and since when ([`Sessions`]), the two session caps
//! (gateway-wide `server.max_sessions`, per caller `server.max_sessions_per_subject`), and each
//! session's own settings — the log level chosen with `logging/setLevel`, the resources it
//! subscribed to and the task pushing changes to it ([`SessionState`]).
//!
//! The live-session table itself belongs to the protocol library; `mcp` adapts it to
//! [`LiveSessions`]. That trait plus this module is the seam a shared store (Redis) replaces:
//! an implementation that lists, closes and owns sessions across processes.
//!
//! Must not: authenticate (`auth` hands over a [`CallerId`]), parse JSON-RPC or build HTTP
//! answers (`transport` maps [`Full`] and [`NotOwner`] to the wire), or use rmcp types (`mcp`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use crate::auth::{CallerId, Principal};
use crate::sandbox::BoxFuture;
use crate::telemetry::hashed_session;

/// The live sessions of one tenant's endpoint, as the protocol layer keeps them.
pub trait LiveSessions: Send + Sync {
    /// The ids of the sessions open now.
    fn ids(&self) -> BoxFuture<'_, HashSet<String>>;
    /// End a session: its streams close and its id is unknown from now on.
    fn close<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()>;
    /// Session `id` is in use by requests the table itself did not see (the direct path):
    /// its idle timer starts again.
    fn touch<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()>;
}

/// A session id presented by a caller that did not create it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the session was created by another caller")]
pub struct NotOwner;

/// No room for another session on this gateway.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the gateway has reached its session limit ({live} of {max} sessions live)")]
pub struct Full {
    /// Sessions live now.
    pub live: usize,
    /// `server.max_sessions`.
    pub max: usize,
}

/// Session caps, from `[server]`.
#[derive(Clone, Copy, Debug)]
pub struct Caps {
    /// Most live sessions per tenant endpoint.
    pub max_sessions: usize,
    /// Most live sessions one authenticated caller may hold.
    pub max_per_caller: usize,
    /// After how long without a request the live table closes a session
    /// (`server.session_idle_timeout_secs`).
    pub idle: std::time::Duration,
}

/// One tenant's sessions: their owners and caps, over the protocol layer's live table.
pub struct Sessions {
    tenant: Arc<str>,
    live: Arc<dyn LiveSessions>,
    caps: Caps,
    /// Which caller created each session, and when: a session is usable only by its creator.
    owners: Mutex<HashMap<String, (CallerId, Instant)>>,
    /// When each session served on the direct path last restarted the live table's idle timer.
    touched: Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("tenant", &self.tenant)
            .field("caps", &self.caps)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// The sessions of `tenant`'s endpoint, whose live table is `live`.
    pub fn new(tenant: Arc<str>, live: Arc<dyn LiveSessions>, caps: Caps) -> Self {
        Self {
            tenant,
            live,
            caps: Caps {
                max_per_caller: caps.max_per_caller.min(caps.max_sessions),
                ..caps
            },
            owners: Mutex::default(),
            touched: Mutex::default(),
        }
    }

    /// Session `id` answered a request the live table did not see: restart its idle timer,
    /// at most once per quarter of `idle` (so a session used only on the direct path stays
    /// open as long as it is used, at the cost of one message to the table per quarter).
    pub async fn keep_alive(&self, id: &str) {
        let now = Instant::now();
        let due = {
            let mut touched = self.touched.lock();
            match touched.get(id) {
                Some(at) if now.duration_since(*at) < self.caps.idle / 4 => false,
                _ => {
                    touched.insert(id.to_string(), now);
                    true
                }
            }
        };
        if due {
            self.live.touch(id).await;
        }
    }

    /// Whether `caller` may use session `id` (any caller may use an id nobody owns: the
    /// protocol layer answers 404 for it).
    pub fn check_owner(&self, id: &str, caller: &CallerId) -> Result<(), NotOwner> {
        match self.owners.lock().get(id) {
            Some((owner, _)) if owner != caller => Err(NotOwner),
            _ => Ok(()),
        }
    }

    /// Make room for a new session of `caller`. A caller at its cap has its oldest session
    /// closed (clients that never `DELETE` keep working, and one caller can never hold more
    /// than its share); a full gateway refuses. Configured identities (authentication off)
    /// are all one caller: only the gateway-wide cap applies to them.
    pub async fn make_room(&self, caller: &CallerId) -> Result<(), Full> {
        let live = self.live.ids().await;
        if live.len() >= self.caps.max_sessions {
            return Err(Full {
                live: live.len(),
                max: self.caps.max_sessions,
            });
        }
        if caller.issuer.is_none() {
            return Ok(());
        }
        for id in self.evict_for(caller, &live) {
            tracing::info!(tenant = %self.tenant, caller = %caller, max = self.caps.max_per_caller,
                session = %hashed_session(&id),
                "closed this caller's oldest session to make room (per-caller session limit)");
            self.live.close(&id).await;
        }
        Ok(())
    }

    /// The sessions of `caller` to close so that one more fits under its cap, oldest first;
    /// forgets owners of sessions no longer live.
    fn evict_for(&self, caller: &CallerId, live: &HashSet<String>) -> Vec<String> {
        self.touched.lock().retain(|id, _| live.contains(id));
        let mut owners = self.owners.lock();
        owners.retain(|id, _| live.contains(id));
        let mut mine: Vec<(&String, Instant)> = owners
            .iter()
            .filter(|(_, (o, _))| o == caller)
            .map(|(id, (_, at))| (id, *at))
            .collect();
        if mine.len() < self.caps.max_per_caller {
            return Vec::new();
        }
        mine.sort_by_key(|(_, at)| *at);
        let evict: Vec<String> = mine
            .iter()
            .take(mine.len() + 1 - self.caps.max_per_caller)
            .map(|(id, _)| (*id).clone())
            .collect();
        for id in &evict {
            owners.remove(id);
        }
        evict
    }

    /// Remember that `caller` created session `id`.
    pub fn bind(&self, id: String, caller: CallerId) {
        self.owners.lock().insert(id, (caller, Instant::now()));
    }

    /// Live sessions now.
    pub async fn live(&self) -> usize {
        self.live.ids().await.len()
    }
}

/// MCP log severities (RFC 5424), least severe first: `Ord` is severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Notice,
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
}

impl LogLevel {
    const ALL: [LogLevel; 8] = [
        Self::Debug,
        Self::Info,
        Self::Notice,
        Self::Warning,
        Self::Error,
        Self::Critical,
        Self::Alert,
        Self::Emergency,
    ];

    /// The level MCP spells `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.name() == name)
    }

    /// How MCP spells this level.
    pub fn name(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Notice => "notice",
            Self::Warning => "warning",
            Self::Error => "error",
            Self::Critical => "critical",
            Self::Alert => "alert",
            Self::Emergency => "emergency",
        }
    }
}

/// One 2025 session's own settings (a stateless 2026-07-28 request has none).
#[derive(Default)]
pub struct SessionState {
    /// Chosen by `logging/setLevel`; until then the session hears every level.
    log_level: Mutex<Option<LogLevel>>,
    /// URIs subscribed with `resources/subscribe`, with the caller that subscribed (each
    /// update is authorized again before it is sent).
    subscriptions: Mutex<HashMap<String, Principal>>,
    /// Pushes changes to the session; aborted when the session ends.
    watcher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl SessionState {
    /// The lowest level this session wants to hear.
    pub fn log_level(&self) -> LogLevel {
        self.log_level.lock().unwrap_or(LogLevel::Debug)
    }

    /// `logging/setLevel`.
    pub fn set_log_level(&self, level: LogLevel) {
        *self.log_level.lock() = Some(level);
    }

    /// `resources/subscribe` by `who` (already authorized).
    pub fn subscribe(&self, uri: String, who: Principal) {
        self.subscriptions.lock().insert(uri, who);
    }

    /// `resources/unsubscribe`.
    pub fn unsubscribe(&self, uri: &str) {
        self.subscriptions.lock().remove(uri);
    }

    /// Who subscribed to `uri` in this session, if anyone.
    pub fn subscriber(&self, uri: &str) -> Option<Principal> {
        self.subscriptions.lock().get(uri).cloned()
    }

    /// The task pushing changes to this session (replacing, and stopping, an earlier one).
    pub fn set_watcher(&self, task: tokio::task::JoinHandle<()>) {
        if let Some(old) = self.watcher.lock().replace(task) {
            old.abort();
        }
    }
}

impl Drop for SessionState {
    fn drop(&mut self) {
        if let Some(task) = self.watcher.lock().take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::CallerName;

    /// A live table the test controls, counting the idle-timer restarts it is asked for.
    #[derive(Default)]
    struct Table(Mutex<HashSet<String>>, std::sync::atomic::AtomicUsize);

    impl LiveSessions for Table {
        fn ids(&self) -> BoxFuture<'_, HashSet<String>> {
            Box::pin(async { self.0.lock().clone() })
        }
        fn close<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()> {
            Box::pin(async move {
                self.0.lock().remove(id);
            })
        }
        fn touch<'a>(&'a self, _id: &'a str) -> BoxFuture<'a, ()> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Box::pin(async {})
        }
    }

    fn caller(issuer: Option<&str>, sub: &str) -> CallerId {
        CallerId {
            issuer: issuer.map(Arc::from),
            name: CallerName::Subject(sub.into()),
        }
    }

    fn sessions(max_sessions: usize, max_per_caller: usize) -> (Arc<Table>, Sessions) {
        let table = Arc::new(Table::default());
        let caps = Caps {
            max_sessions,
            max_per_caller,
            idle: std::time::Duration::from_millis(400),
        };
        (table.clone(), Sessions::new("t".into(), table, caps))
    }

    #[tokio::test]
    async fn a_session_served_on_the_direct_path_restarts_its_idle_timer_once_per_quarter() {
        let (table, sessions) = sessions(10, 10);
        let who = caller(Some("https://as"), "alice");
        open(&table, &sessions, "s1", &who).await;
        let touches = || table.1.load(std::sync::atomic::Ordering::Relaxed);
        for _ in 0..50 {
            sessions.keep_alive("s1").await;
        }
        assert_eq!(
            touches(),
            1,
            "fifty requests at once restart the timer once"
        );
        tokio::time::sleep(std::time::Duration::from_millis(120)).await;
        sessions.keep_alive("s1").await;
        assert_eq!(touches(), 2, "a quarter of the idle time later, once more");
        sessions.keep_alive("s2").await;
        assert_eq!(touches(), 3, "each session has its own timer");
    }

    async fn open(table: &Table, sessions: &Sessions, id: &str, who: &CallerId) {
        sessions.make_room(who).await.unwrap();
        table.0.lock().insert(id.into());
        sessions.bind(id.into(), who.clone());
    }

    #[tokio::test]
    async fn a_caller_at_its_cap_loses_its_own_oldest_session_only() {
        let (table, s) = sessions(10, 2);
        let alice = caller(Some("https://as"), "alice");
        let bob = caller(Some("https://as"), "bob");
        open(&table, &s, "b1", &bob).await;
        open(&table, &s, "a1", &alice).await;
        open(&table, &s, "a2", &alice).await;
        open(&table, &s, "a3", &alice).await;
        let live = table.0.lock().clone();
        assert_eq!(live, HashSet::from(["b1".into(), "a2".into(), "a3".into()]));
    }

    #[tokio::test]
    async fn the_same_subject_at_another_issuer_is_another_owner() {
        let (table, s) = sessions(10, 2);
        let one = caller(Some("https://one"), "alice");
        let two = caller(Some("https://two"), "alice");
        open(&table, &s, "s1", &one).await;
        assert_eq!(s.check_owner("s1", &two), Err(NotOwner));
        assert_eq!(s.check_owner("s1", &one), Ok(()));
        assert_eq!(s.check_owner("unknown", &two), Ok(()));
    }

    #[tokio::test]
    async fn a_full_gateway_refuses_and_configured_identities_share_only_the_gateway_cap() {
        let (table, s) = sessions(3, 1);
        let configured = caller(None, "dev");
        for id in ["c1", "c2", "c3"] {
            open(&table, &s, id, &configured).await;
        }
        assert_eq!(
            s.make_room(&configured).await,
            Err(Full { live: 3, max: 3 })
        );
    }
}
