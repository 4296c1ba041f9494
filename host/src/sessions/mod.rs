//! Sessions: every piece of state a 2025 session carries besides the protocol machine.
//!
//! Owns: which caller owns each session and since when ([`Sessions`]), the two session caps
//! (gateway-wide `server.max_sessions`, per caller `server.max_sessions_per_subject`), and each
//! session's own settings — the log level chosen with `logging/setLevel`, the resources it
//! subscribed to and the task pushing changes to it ([`SessionState`]).
//!
//! The live-session table itself belongs to the protocol library; `mcp` adapts it to
//! [`LiveSessions`]. With several replicas, a [`Directory`] (`directory`) says which replica
//! holds a session this one does not, and [`Sessions::route`] turns that into a [`Route`].
//!
//! Must not: authenticate (`auth` hands over a [`CallerId`]), parse JSON-RPC or build HTTP
//! answers (`transport` maps [`Full`], [`NotOwner`] and [`Route`] to the wire, and forwards),
//! or use rmcp types (`mcp`).

mod directory;

pub use directory::{Directory, DirectoryDown, Evicted, Location, SharedNoRoom, SharedRoom};

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

/// Why no session can be opened now.
#[derive(Debug, thiserror::Error)]
pub enum NoRoom {
    /// The gateway is full.
    #[error(transparent)]
    Full(#[from] Full),
    /// The caller is opening as many sessions at once as it may hold.
    #[error("this caller is already opening {max} sessions, as many as it may hold; retry shortly")]
    Busy {
        /// `server.max_sessions_per_subject`.
        max: usize,
    },
    /// The shared directory cannot count the caller's sessions on the other replicas.
    #[error(transparent)]
    Down(#[from] DirectoryDown),
}

/// A session id as the shared directory names it (SHA-256, hex): whoever reads the store
/// learns no usable id.
pub fn session_digest(id: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(id.as_bytes()))
}

/// Room for one session, held from before it is created until it is [`Sessions::open`]ed (or
/// given back when dropped: the `initialize` failed).
#[must_use = "the room is given back when the reservation is dropped"]
pub struct Reservation {
    sessions: Arc<Sessions>,
    caller: CallerId,
    /// The room reserved across the replicas, until the session exists.
    shared: Option<String>,
    /// Whether the room still counts in this replica's reservations (until the session is
    /// counted among its owners instead).
    local: bool,
}

impl Reservation {
    /// The room stops counting among this replica's reservations; `then` runs under the
    /// same lock (so no other caller's count sees the room twice, or not at all).
    fn settle_local(&mut self, then: impl FnOnce()) {
        let mut pending = self.sessions.pending.lock();
        then();
        if !std::mem::take(&mut self.local) {
            return;
        }
        pending.total -= 1;
        if let Some(n) = pending.by_caller.get_mut(&self.caller) {
            *n -= 1;
            if *n == 0 {
                pending.by_caller.remove(&self.caller);
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let (Some(reservation), Some(directory)) =
            (self.shared.take(), self.sessions.directory.clone())
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let (tenant, caller) = (self.sessions.tenant.clone(), self.caller.clone());
            runtime.spawn(async move {
                directory.unreserve(&tenant, &caller, &reservation).await;
            });
        }
        self.settle_local(|| {});
    }
}

/// Reservations not yet sessions.
#[derive(Default)]
struct Pending {
    by_caller: HashMap<CallerId, usize>,
    total: usize,
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

/// Where a request for a session goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// This replica serves it (a session it holds, or an id nobody holds: the protocol layer
    /// answers 404).
    Here,
    /// Another replica holds the session: forward the request to it.
    Peer {
        /// The replica's id, for logs.
        replica: String,
        /// Its advertised base URL.
        url: reqwest::Url,
    },
}

/// Why a request for a session cannot be routed.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The session belongs to another caller.
    #[error(transparent)]
    NotOwner(#[from] NotOwner),
    /// The shared directory could not say where the session lives.
    #[error(transparent)]
    DirectoryDown(#[from] DirectoryDown),
}

/// One tenant's sessions: their owners and caps, over the protocol layer's live table.
pub struct Sessions {
    tenant: Arc<str>,
    live: Arc<dyn LiveSessions>,
    /// With several replicas: where the sessions this one does not hold live.
    directory: Option<Arc<dyn Directory>>,
    caps: Caps,
    /// Which caller created each session, and when: a session is usable only by its creator.
    owners: Mutex<HashMap<String, (CallerId, Instant)>>,
    /// When each session served on the direct path last restarted the live table's idle timer.
    touched: Mutex<HashMap<String, Instant>>,
    /// Room reserved for sessions being created (locked before `owners`).
    pending: Mutex<Pending>,
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
    /// The sessions of `tenant`'s endpoint, whose live table is `live`; `directory` when
    /// other replicas serve the same endpoint.
    pub fn new(
        tenant: Arc<str>,
        live: Arc<dyn LiveSessions>,
        directory: Option<Arc<dyn Directory>>,
        caps: Caps,
    ) -> Self {
        Self {
            tenant,
            live,
            directory,
            caps: Caps {
                max_per_caller: caps.max_per_caller.min(caps.max_sessions),
                ..caps
            },
            owners: Mutex::default(),
            touched: Mutex::default(),
            pending: Mutex::default(),
        }
    }

    /// Session `id` (held here) answered a request; `direct` when the live table did not see
    /// it (the direct path). At most once per quarter of `idle`: restart the live table's
    /// idle timer for a direct request (so a session used only on the direct path stays open
    /// as long as it is used), and keep the session's record in the shared directory.
    pub async fn served(&self, id: &str, direct: bool) {
        if !direct && self.directory.is_none() {
            return;
        }
        if !self.owners.lock().contains_key(id) {
            // Not a session held here: nothing to keep (and no entry for a made-up id).
            return;
        }
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
        if !due {
            return;
        }
        if direct {
            self.live.touch(id).await;
        }
        if let Some(directory) = &self.directory {
            directory.refresh(&self.tenant, id).await;
        }
    }

    /// Where a request of `caller` for session `id` goes: here for a session this replica
    /// holds (if `caller` created it) or for an id no replica holds; to the replica holding
    /// it otherwise. `forwarded` requests (another replica sent them) are always served here:
    /// a request is forwarded at most once.
    pub async fn route(
        &self,
        id: &str,
        caller: &CallerId,
        forwarded: bool,
    ) -> Result<Route, RouteError> {
        if let Some((owner, _)) = self.owners.lock().get(id) {
            return if owner == caller {
                Ok(Route::Here)
            } else {
                Err(NotOwner.into())
            };
        }
        let Some(directory) = self.directory.as_ref().filter(|_| !forwarded) else {
            return Ok(Route::Here);
        };
        Ok(match directory.locate(&self.tenant, id).await? {
            Location::Peer { replica, url } => Route::Peer { replica, url },
            Location::Here | Location::Nowhere => Route::Here,
        })
    }

    /// Whether session `id` is held here and is `caller`'s.
    pub fn holds(&self, id: &str, caller: &CallerId) -> bool {
        self.owners
            .lock()
            .get(id)
            .is_some_and(|(owner, _)| owner == caller)
    }

    /// Reserve room for a new session of `caller`, before the session is created: the slot
    /// counts against both caps from now until it becomes a session ([`Sessions::open`]) or
    /// the reservation is dropped, so a burst of `initialize`s cannot open more than the caps
    /// allow. A caller at its cap has its oldest session closed (clients that never `DELETE`
    /// keep working, and one caller can never hold more than its share); a caller whose cap is
    /// filled by sessions still opening is refused ([`NoRoom::Busy`]); a full gateway refuses
    /// ([`NoRoom::Full`]), after the caller's own eviction has counted. Configured identities
    /// (authentication off) are all one caller: only the gateway-wide cap applies to them.
    pub async fn make_room(self: &Arc<Self>, caller: &CallerId) -> Result<Reservation, NoRoom> {
        let since = Instant::now();
        let live = self.live.ids().await;
        // With replicas the caller's sessions are counted, and its oldest chosen, across all
        // of them; this replica still bounds what it holds itself.
        let shared = self.directory.clone().filter(|_| caller.issuer.is_some());
        let evict = {
            let mut pending = self.pending.lock();
            let held = self.forget_gone(&live, since);
            let evict = if caller.issuer.is_some() {
                let opening = pending.by_caller.get(caller).copied().unwrap_or(0);
                if opening >= self.caps.max_per_caller {
                    return Err(NoRoom::Busy {
                        max: self.caps.max_per_caller,
                    });
                }
                self.evict_for(caller, opening)
            } else {
                Vec::new()
            };
            let counted = held - evict.len() + pending.total;
            if counted >= self.caps.max_sessions {
                return Err(NoRoom::Full(Full {
                    live: counted,
                    max: self.caps.max_sessions,
                }));
            }
            let mut owners = self.owners.lock();
            for id in &evict {
                owners.remove(id);
            }
            *pending.by_caller.entry(caller.clone()).or_default() += 1;
            pending.total += 1;
            evict
        };
        let mut room = Reservation {
            sessions: self.clone(),
            caller: caller.clone(),
            shared: None,
            local: true,
        };
        for id in evict {
            self.close_for_room(caller, &id).await;
        }
        if let Some(directory) = shared {
            let reserved = directory
                .reserve(&self.tenant, caller, self.caps.max_per_caller)
                .await
                .map_err(|e| match e {
                    SharedNoRoom::Busy(max) => NoRoom::Busy { max },
                    SharedNoRoom::Down(e) => NoRoom::Down(e),
                })?;
            room.shared = Some(reserved.reservation);
            for digest in reserved.evict {
                match self.held_with_digest(&digest) {
                    Some(id) => {
                        self.owners.lock().remove(&id);
                        self.close_for_room(caller, &id).await;
                    }
                    None => directory.evict(&self.tenant, &digest).await,
                }
            }
        }
        Ok(room)
    }

    /// Close session `id` of `caller` to make room for its new one.
    async fn close_for_room(&self, caller: &CallerId, id: &str) {
        tracing::info!(tenant = %self.tenant, caller = %caller, max = self.caps.max_per_caller,
            session = %hashed_session(id),
            "closed this caller's oldest session to make room (per-caller session limit)");
        self.live.close(id).await;
        if let Some(directory) = &self.directory {
            directory.release(&self.tenant, id, Some(caller)).await;
        }
    }

    /// The id of the session held here whose digest is `digest`.
    fn held_with_digest(&self, digest: &str) -> Option<String> {
        self.owners
            .lock()
            .keys()
            .find(|id| session_digest(id) == digest)
            .cloned()
    }

    /// Hear the evictions other replicas decide for this tenant's sessions held here.
    pub fn attach(self: &Arc<Self>) {
        let Some(directory) = &self.directory else {
            return;
        };
        let me = Arc::downgrade(self);
        directory.on_evicted(
            &self.tenant,
            Arc::new(move |digest: &str| {
                let Some(sessions) = me.upgrade() else {
                    return;
                };
                let Some(id) = sessions.held_with_digest(digest) else {
                    return;
                };
                tokio::spawn(async move {
                    tracing::info!(tenant = %sessions.tenant, session = %hashed_session(&id),
                        "closed a session another replica evicted (per-caller session limit)");
                    sessions.owners.lock().remove(&id);
                    sessions.touched.lock().remove(&id);
                    sessions.live.close(&id).await;
                });
            }),
        );
    }

    /// Forget the owners (and touch times) of sessions no longer `live` (the protocol
    /// layer's table, read at `since`), and say how many sessions are held: the live ones and
    /// those opened since the table was read. An owner recorded after `since` is kept
    /// whatever the table said: its session may not have been in it yet (forgetting it lost
    /// the session's owner check, and its place under the caps).
    fn forget_gone(&self, live: &HashSet<String>, since: Instant) -> usize {
        self.touched
            .lock()
            .retain(|id, at| live.contains(id) || *at >= since);
        let mut owners = self.owners.lock();
        owners.retain(|id, (_, at)| live.contains(id) || *at >= since);
        live.len() + owners.keys().filter(|id| !live.contains(*id)).count()
    }

    /// The sessions of `caller` to close so that one more fits under its cap beside the
    /// `opening` ones it has reserved, oldest first.
    fn evict_for(&self, caller: &CallerId, opening: usize) -> Vec<String> {
        let owners = self.owners.lock();
        let mut mine: Vec<(&String, Instant)> = owners
            .iter()
            .filter(|(_, (o, _))| o == caller)
            .map(|(id, (_, at))| (id, *at))
            .collect();
        let over = (mine.len() + opening + 1).saturating_sub(self.caps.max_per_caller);
        mine.sort_by_key(|(_, at)| *at);
        mine.iter()
            .take(over)
            .map(|(id, _)| (*id).clone())
            .collect()
    }

    /// The session `id` the reservation was made for exists: remember its owner, and record
    /// it in the shared directory. When the directory cannot be written the session is closed
    /// again (no other replica could find it) and the error returned.
    ///
    /// The owner is remembered first: from the moment the session counts for its caller on
    /// the other replicas, one of them may evict it, and the eviction must find it here (it
    /// was lost before, and the caller kept one session beyond its cap).
    pub async fn open(
        &self,
        id: String,
        mut reservation: Reservation,
    ) -> Result<(), DirectoryDown> {
        let owner = (reservation.caller.clone(), Instant::now());
        reservation.settle_local(|| {
            self.owners.lock().insert(id.clone(), owner);
        });
        if let Some(directory) = &self.directory {
            if let Err(e) = directory.claim(&self.tenant, &id).await {
                self.owners.lock().remove(&id);
                self.live.close(&id).await;
                return Err(e);
            }
            if let Some(shared) = reservation.shared.take() {
                directory
                    .opened(&self.tenant, &reservation.caller, &shared, &id)
                    .await;
            }
        }
        drop(reservation);
        Ok(())
    }

    /// Session `id` ended here (`DELETE`): forget it, here and in the shared directory.
    pub async fn ended(&self, id: &str) {
        let owner = self.owners.lock().remove(id).map(|(caller, _)| caller);
        self.touched.lock().remove(id);
        if let Some(directory) = &self.directory {
            directory.release(&self.tenant, id, owner.as_ref()).await;
        }
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

    /// A live table the test controls, counting the idle-timer restarts it is asked for; with
    /// a gate, a read of its ids is answered only once the gate opens (what it answers is the
    /// table as it was when asked, as a slow read would).
    #[derive(Default)]
    struct Table(
        Mutex<HashSet<String>>,
        std::sync::atomic::AtomicUsize,
        Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    );

    impl LiveSessions for Table {
        fn ids(&self) -> BoxFuture<'_, HashSet<String>> {
            let read = self.0.lock().clone();
            let gate = self.2.lock().clone();
            Box::pin(async move {
                if let Some(gate) = gate {
                    let _open = gate.acquire().await;
                }
                read
            })
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

    fn sessions(max_sessions: usize, max_per_caller: usize) -> (Arc<Table>, Arc<Sessions>) {
        let table = Arc::new(Table::default());
        let caps = Caps {
            max_sessions,
            max_per_caller,
            idle: std::time::Duration::from_millis(400),
        };
        (
            table.clone(),
            Arc::new(Sessions::new("t".into(), table, None, caps)),
        )
    }

    #[tokio::test]
    async fn a_session_served_on_the_direct_path_restarts_its_idle_timer_once_per_quarter() {
        let (table, sessions) = sessions(10, 10);
        let who = caller(Some("https://as"), "alice");
        open(&table, &sessions, "s1", &who).await;
        let touches = || table.1.load(std::sync::atomic::Ordering::Relaxed);
        for _ in 0..50 {
            sessions.served("s1", true).await;
        }
        assert_eq!(
            touches(),
            1,
            "fifty requests at once restart the timer once"
        );
        tokio::time::sleep(std::time::Duration::from_millis(120)).await;
        sessions.served("s1", true).await;
        assert_eq!(touches(), 2, "a quarter of the idle time later, once more");
        open(&table, &sessions, "s2", &who).await;
        sessions.served("s2", true).await;
        assert_eq!(touches(), 3, "each session has its own timer");
        sessions.served("made-up", true).await;
        assert_eq!(touches(), 3, "an id not held here has none");
    }

    async fn open(table: &Table, sessions: &Arc<Sessions>, id: &str, who: &CallerId) {
        let room = sessions.make_room(who).await.unwrap();
        table.0.lock().insert(id.into());
        sessions.open(id.into(), room).await.unwrap();
    }

    /// A burst: every `initialize` reserves before any session exists. Before, owners were
    /// counted only once their sessions existed, so a burst of 24 left 8 sessions under a cap
    /// of 3 and filled the gateway for everyone else.
    #[tokio::test]
    async fn a_burst_of_reservations_holds_to_both_caps() {
        let (table, s) = sessions(4, 3);
        let alice = caller(Some("https://as"), "alice");
        let mut held = Vec::new();
        let mut refused = 0;
        for _ in 0..24 {
            match s.make_room(&alice).await {
                Ok(room) => held.push(room),
                Err(NoRoom::Busy { max: 3 }) => refused += 1,
                Err(other) => panic!("{other}"),
            }
        }
        assert_eq!((held.len(), refused), (3, 21));
        let bob = caller(Some("https://as"), "bob");
        let bobs = s.make_room(&bob).await.expect("bob's slot is free");
        let carol = caller(Some("https://as"), "carol");
        assert!(matches!(
            s.make_room(&carol).await,
            Err(NoRoom::Full(Full { live: 4, max: 4 }))
        ));
        // Failed initializes give their room back; opened ones keep it as sessions.
        drop(bobs);
        for (i, room) in held.into_iter().enumerate() {
            table.0.lock().insert(format!("a{i}"));
            s.open(format!("a{i}"), room).await.unwrap();
        }
        let _carols = s.make_room(&carol).await.expect("room given back");
        assert!(matches!(s.make_room(&bob).await, Err(NoRoom::Full(_))));
        // Alice at her cap on a full gateway: her own eviction makes the room.
        let _one = s.make_room(&alice).await.unwrap();
        let live = table.0.lock().clone();
        assert_eq!(live, HashSet::from(["a1".into(), "a2".into()]), "a0 closed");
    }

    /// A session opened while another `initialize` was reading the live table (before its
    /// session was in it). Before, that `initialize` forgot the new session's owner: anyone
    /// holding its id could use it, and it counted under neither cap.
    #[tokio::test]
    async fn a_session_opened_during_another_initialize_keeps_its_owner() {
        let (table, s) = sessions(3, 1);
        let alice = caller(Some("https://as"), "alice");
        let bob = caller(Some("https://as"), "bob");
        let room = s.make_room(&alice).await.unwrap();
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        *table.2.lock() = Some(gate.clone());
        let (s2, bob2) = (s.clone(), bob.clone());
        let bobs = tokio::spawn(async move { s2.make_room(&bob2).await.map(|_| ()) });
        tokio::task::yield_now().await;
        // Bob's read of the table is under way; alice's session appears and opens.
        table.0.lock().insert("a1".into());
        s.open("a1".into(), room).await.unwrap();
        gate.add_permits(1);
        bobs.await.unwrap().unwrap();
        assert!(matches!(
            s.route("a1", &bob, false).await,
            Err(RouteError::NotOwner(NotOwner))
        ));
        // And it still counts: one more of alice's replaces it; the gateway holds 3 at most.
        *table.2.lock() = None;
        open(&table, &s, "a2", &alice).await;
        assert_eq!(*table.0.lock(), HashSet::from(["a2".into()]));
        let carol = caller(Some("https://as"), "carol");
        let dave = caller(Some("https://as"), "dave");
        open(&table, &s, "c1", &carol).await;
        let _bobs_room_is_gone = s.make_room(&bob).await.unwrap();
        assert!(matches!(
            s.make_room(&dave).await,
            Err(NoRoom::Full(Full { live: 3, max: 3 }))
        ));
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
        assert!(matches!(
            s.route("s1", &two, false).await,
            Err(RouteError::NotOwner(NotOwner))
        ));
        assert_eq!(s.route("s1", &one, false).await.unwrap(), Route::Here);
        assert_eq!(s.route("unknown", &two, false).await.unwrap(), Route::Here);
    }

    /// A shared directory the test controls: what it holds, what it was told, and whether it
    /// is reachable.
    #[derive(Default)]
    struct Shared {
        records: Mutex<HashMap<(String, String), Location>>,
        log: Mutex<Vec<String>>,
        down: std::sync::atomic::AtomicBool,
        /// Who hears evictions another replica decides.
        evicted: Mutex<Option<Evicted>>,
        /// Another replica evicts each session the moment it counts for its caller.
        evict_when_opened: std::sync::atomic::AtomicBool,
    }

    impl Directory for Shared {
        fn replica(&self) -> &str {
            "r-here"
        }
        fn claim<'a>(
            &'a self,
            tenant: &'a str,
            id: &'a str,
        ) -> BoxFuture<'a, Result<(), DirectoryDown>> {
            Box::pin(async move {
                if self.down.load(std::sync::atomic::Ordering::Relaxed) {
                    return Err(DirectoryDown("unreachable".into()));
                }
                self.log.lock().push(format!("claim {tenant}/{id}"));
                Ok(())
            })
        }
        fn refresh<'a>(&'a self, tenant: &'a str, id: &'a str) -> BoxFuture<'a, ()> {
            self.log.lock().push(format!("refresh {tenant}/{id}"));
            Box::pin(async {})
        }
        fn release<'a>(
            &'a self,
            tenant: &'a str,
            id: &'a str,
            _caller: Option<&'a CallerId>,
        ) -> BoxFuture<'a, ()> {
            self.log.lock().push(format!("release {tenant}/{id}"));
            Box::pin(async {})
        }
        fn reserve<'a>(
            &'a self,
            _tenant: &'a str,
            _caller: &'a CallerId,
            _cap: usize,
        ) -> BoxFuture<'a, Result<SharedRoom, SharedNoRoom>> {
            Box::pin(async move {
                if self.down.load(std::sync::atomic::Ordering::Relaxed) {
                    return Err(DirectoryDown("unreachable".into()).into());
                }
                Ok(SharedRoom {
                    reservation: "r".into(),
                    evict: Vec::new(),
                })
            })
        }
        fn opened<'a>(
            &'a self,
            _tenant: &'a str,
            _caller: &'a CallerId,
            _reservation: &'a str,
            id: &'a str,
        ) -> BoxFuture<'a, ()> {
            if self
                .evict_when_opened
                .load(std::sync::atomic::Ordering::Relaxed)
                && let Some(evicted) = self.evicted.lock().clone()
            {
                evicted(&session_digest(id));
            }
            Box::pin(async {})
        }
        fn unreserve<'a>(
            &'a self,
            _tenant: &'a str,
            _caller: &'a CallerId,
            _reservation: &'a str,
        ) -> BoxFuture<'a, ()> {
            Box::pin(async {})
        }
        fn evict<'a>(&'a self, _tenant: &'a str, _digest: &'a str) -> BoxFuture<'a, ()> {
            Box::pin(async {})
        }
        fn on_evicted(&self, _tenant: &str, evicted: Evicted) {
            *self.evicted.lock() = Some(evicted);
        }
        fn locate<'a>(
            &'a self,
            tenant: &'a str,
            id: &'a str,
        ) -> BoxFuture<'a, Result<Location, DirectoryDown>> {
            Box::pin(async move {
                if self.down.load(std::sync::atomic::Ordering::Relaxed) {
                    return Err(DirectoryDown("unreachable".into()));
                }
                Ok(self
                    .records
                    .lock()
                    .get(&(tenant.to_string(), id.to_string()))
                    .cloned()
                    .unwrap_or(Location::Nowhere))
            })
        }
    }

    fn clustered(max_per_caller: usize) -> (Arc<Table>, Arc<Shared>, Arc<Sessions>) {
        let (table, shared) = (Arc::new(Table::default()), Arc::new(Shared::default()));
        let caps = Caps {
            max_sessions: 10,
            max_per_caller,
            idle: std::time::Duration::from_millis(400),
        };
        let s = Sessions::new("t".into(), table.clone(), Some(shared.clone()), caps);
        (table, shared, Arc::new(s))
    }

    #[tokio::test]
    async fn a_session_held_by_another_replica_is_routed_there_but_never_twice() {
        let (_, shared, s) = clustered(10);
        let url = reqwest::Url::parse("http://10.0.0.7:8080/").unwrap();
        let peer = Location::Peer {
            replica: "r-peer".into(),
            url: url.clone(),
        };
        shared
            .records
            .lock()
            .insert(("t".into(), "remote".into()), peer);
        let alice = caller(Some("https://as"), "alice");
        assert_eq!(
            s.route("remote", &alice, false).await.unwrap(),
            Route::Peer {
                replica: "r-peer".into(),
                url
            }
        );
        // Forwarded already: served here (the protocol layer answers 404), not sent back.
        assert_eq!(s.route("remote", &alice, true).await.unwrap(), Route::Here);
        // Unknown everywhere: here, for the protocol layer's 404.
        assert_eq!(s.route("nobody", &alice, false).await.unwrap(), Route::Here);
        // Another tenant's record is not this tenant's session.
        shared.records.lock().insert(
            ("other".into(), "theirs".into()),
            Location::Peer {
                replica: "r-peer".into(),
                url: reqwest::Url::parse("http://10.0.0.7:8080/").unwrap(),
            },
        );
        assert_eq!(s.route("theirs", &alice, false).await.unwrap(), Route::Here);
        shared
            .down
            .store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(matches!(
            s.route("remote", &alice, false).await,
            Err(RouteError::DirectoryDown(_))
        ));
    }

    #[tokio::test]
    async fn sessions_are_claimed_refreshed_and_released_in_the_directory() {
        let (table, shared, s) = clustered(1);
        let alice = caller(Some("https://as"), "alice");
        open(&table, &s, "a1", &alice).await;
        s.served("a1", false).await;
        s.served("a1", false).await;
        s.served("made-up", false).await;
        open(&table, &s, "a2", &alice).await;
        s.ended("a2").await;
        assert_eq!(
            *shared.log.lock(),
            [
                "claim t/a1",
                "refresh t/a1",
                "release t/a1",
                "claim t/a2",
                "release t/a2"
            ],
            "one refresh per quarter of the idle time, none for an id not held here; the evicted and the deleted session are released"
        );
    }

    /// Another replica evicts a session as soon as it counts for its caller (a burst over
    /// two replicas). Before, the eviction arrived before this replica remembered the session
    /// and was dropped: the caller kept one session beyond its cap for good.
    #[tokio::test]
    async fn an_eviction_heard_while_the_session_opens_ends_it() {
        let (table, shared, s) = clustered(3);
        s.attach();
        shared
            .evict_when_opened
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let alice = caller(Some("https://as"), "alice");
        open(&table, &s, "a1", &alice).await;
        for _ in 0..200 {
            if table.0.lock().is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(table.0.lock().is_empty(), "the evicted session is closed");
        assert!(matches!(
            s.route("a1", &alice, false).await,
            Ok(Route::Here)
        ));
    }

    #[tokio::test]
    async fn a_session_the_directory_cannot_record_is_closed_again() {
        let (table, shared, s) = clustered(10);
        let alice = caller(Some("https://as"), "alice");
        let room = s.make_room(&alice).await.unwrap();
        table.0.lock().insert("s1".into());
        shared
            .down
            .store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(s.open("s1".into(), room).await.is_err());
        assert!(
            matches!(s.make_room(&alice).await, Err(NoRoom::Down(_))),
            "nor is a new one opened while the caller's sessions cannot be counted"
        );
        assert!(
            table.0.lock().is_empty(),
            "no replica could find it: closed"
        );
        assert_eq!(
            s.route("s1", &caller(Some("https://as"), "mallory"), false)
                .await
                .map_err(|e| e.to_string()),
            Err("the shared session directory is unreachable: unreachable".to_string()),
            "and not remembered as alice's"
        );
    }

    #[tokio::test]
    async fn a_full_gateway_refuses_and_configured_identities_share_only_the_gateway_cap() {
        let (table, s) = sessions(3, 1);
        let configured = caller(None, "dev");
        for id in ["c1", "c2", "c3"] {
            open(&table, &s, id, &configured).await;
        }
        assert!(matches!(
            s.make_room(&configured).await,
            Err(NoRoom::Full(Full { live: 3, max: 3 }))
        ));
    }
}
