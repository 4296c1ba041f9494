//! The 2025 sessions the direct path may serve: what each session's handler learned at
//! `notifications/initialized` (its settings, its client's capabilities) and the direct-path
//! requests in flight in it, so a client's `notifications/cancelled` reaches them.
//!
//! Owns: [`SessionTable`] (one per tenant). Must not: create, own or close sessions (rmcp's
//! session manager does; `crate::sessions` owns owners, caps and keep-alive), or decide
//! whether a request takes the direct path (`direct`).

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use rmcp::RoleServer;
use rmcp::service::Peer;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::sessions::SessionState;

/// Most sessions remembered before the dead ones are swept (live sessions are bounded by
/// `server.max_sessions` anyway; this bounds what closed ones leave behind).
const SWEEP_AT: usize = 1024;

/// One initialized session, as the direct path sees it.
pub(crate) struct LiveSession {
    /// The session's own settings (log level, subscriptions); gone once rmcp drops the
    /// session's handler.
    state: Weak<SessionState>,
    /// The capabilities its client declared at `initialize`.
    pub(super) client_caps: Value,
    /// The session's peer: notifications after a response (a task's status) go through it.
    pub(super) peer: Peer<RoleServer>,
    /// Direct-path requests in flight, by JSON-RPC id (as JSON text).
    inflight: Mutex<HashMap<String, CancellationToken>>,
}

impl LiveSession {
    /// The session's state, if the session is still open.
    pub(super) fn state(&self) -> Option<Arc<SessionState>> {
        self.state.upgrade()
    }

    /// Remember request `id` as in flight until the returned guard drops.
    pub(super) fn start(self: &Arc<Self>, id: &Value, cancel: CancellationToken) -> InFlight {
        let key = id.to_string();
        self.inflight.lock().insert(key.clone(), cancel);
        InFlight {
            session: self.clone(),
            key,
        }
    }
}

/// A direct-path request in flight in a session (removed when dropped).
pub(super) struct InFlight {
    session: Arc<LiveSession>,
    key: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.session.inflight.lock().remove(&self.key);
    }
}

/// One tenant's initialized sessions.
#[derive(Default)]
pub(crate) struct SessionTable {
    sessions: Mutex<HashMap<String, Arc<LiveSession>>>,
}

impl std::fmt::Debug for SessionTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTable")
            .field("sessions", &self.sessions.lock().len())
            .finish()
    }
}

impl SessionTable {
    /// Session `id` finished its handshake: its handler's `state`, its client's `caps`, its
    /// `peer`.
    pub(super) fn register(
        &self,
        id: &str,
        state: &Arc<SessionState>,
        caps: Value,
        peer: Peer<RoleServer>,
    ) {
        let mut sessions = self.sessions.lock();
        if sessions.len() >= SWEEP_AT {
            sessions.retain(|_, s| s.state.strong_count() > 0);
        }
        sessions.insert(
            id.to_string(),
            Arc::new(LiveSession {
                state: Arc::downgrade(state),
                client_caps: caps,
                peer,
                inflight: Mutex::default(),
            }),
        );
    }

    /// Session `id`, if it finished its handshake and is still open.
    pub(super) fn get(&self, id: &str) -> Option<Arc<LiveSession>> {
        let mut sessions = self.sessions.lock();
        let session = sessions.get(id)?;
        if session.state.strong_count() == 0 {
            sessions.remove(id);
            return None;
        }
        Some(session.clone())
    }

    /// The client cancelled request `id` of session `session`: if the direct path is serving
    /// it, stop it (rmcp serves the rest).
    pub(crate) fn cancel(&self, session: &str, id: &Value) {
        let Some(s) = self.sessions.lock().get(session).cloned() else {
            return;
        };
        if let Some(token) = s.inflight.lock().get(&id.to_string()) {
            token.cancel();
        }
    }
}
