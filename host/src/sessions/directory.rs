//! Which replica holds each 2025 session, when several replicas serve one endpoint.
//!
//! Owns the interface ([`Directory`]) a shared store implements (`cluster` does, on Redis) and
//! the answer it gives ([`Location`]). Must not: know how the store works or how a request
//! reaches another replica (`transport` forwards it).

use std::sync::Arc;

use crate::auth::CallerId;
use crate::sandbox::BoxFuture;

/// Where a session the asking replica does not hold lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// The directory says this replica holds it (an id it no longer has, say after a
    /// restart: the protocol layer answers 404).
    Here,
    /// Another live replica holds it; requests for it go to `url` (its advertised base URL).
    Peer {
        /// The replica's id, for logs.
        replica: String,
        /// The replica's base URL (an internal address, checked by the directory).
        url: reqwest::Url,
    },
    /// Nobody holds it: an unknown id, an ended session, or one whose replica is gone.
    Nowhere,
}

/// The shared store could not be asked (unreachable, timed out, refused).
#[derive(Debug, thiserror::Error)]
#[error("the shared session directory is unreachable: {0}")]
pub struct DirectoryDown(pub String);

/// Room for a caller's session reserved across every replica ([`Directory::reserve`]).
#[derive(Debug)]
pub struct SharedRoom {
    /// The reservation, until the session exists or the room is given back.
    pub reservation: String,
    /// Digests ([`super::session_digest`]) of the caller's oldest sessions, on any replica,
    /// taken out of the caller's count to make the room: they are to be ended.
    pub evict: Vec<String>,
}

/// Why no room could be reserved across the replicas.
#[derive(Debug, thiserror::Error)]
pub enum SharedNoRoom {
    /// The caller is opening as many sessions at once, across the replicas, as it may hold.
    #[error("this caller is already opening {0} sessions across the replicas")]
    Busy(usize),
    /// The shared store could not be asked.
    #[error(transparent)]
    Down(#[from] DirectoryDown),
}

/// Told the digest of each session of its tenant another replica evicted.
pub type Evicted = Arc<dyn Fn(&str) + Send + Sync>;

/// The sessions of every replica of one gateway, keyed by (tenant, session id).
pub trait Directory: Send + Sync {
    /// This replica's id (it marks the requests it forwards, so none is forwarded twice).
    fn replica(&self) -> &str;
    /// Record that this replica holds session `id` of `tenant`.
    fn claim<'a>(
        &'a self,
        tenant: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<(), DirectoryDown>>;
    /// Session `id` is still in use here: keep its record (best effort).
    fn refresh<'a>(&'a self, tenant: &'a str, id: &'a str) -> BoxFuture<'a, ()>;
    /// Session `id` of `caller` (if known) ended here (best effort).
    fn release<'a>(
        &'a self,
        tenant: &'a str,
        id: &'a str,
        caller: Option<&'a CallerId>,
    ) -> BoxFuture<'a, ()>;
    /// Reserve room for one more session of `caller` at `tenant` under `cap`, counting its
    /// sessions and reservations on every replica; the oldest sessions beyond the cap are
    /// named for eviction.
    fn reserve<'a>(
        &'a self,
        tenant: &'a str,
        caller: &'a CallerId,
        cap: usize,
    ) -> BoxFuture<'a, Result<SharedRoom, SharedNoRoom>>;
    /// The reservation became session `id` (best effort).
    fn opened<'a>(
        &'a self,
        tenant: &'a str,
        caller: &'a CallerId,
        reservation: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, ()>;
    /// The reservation is given back (best effort).
    fn unreserve<'a>(
        &'a self,
        tenant: &'a str,
        caller: &'a CallerId,
        reservation: &'a str,
    ) -> BoxFuture<'a, ()>;
    /// End the session with digest `digest` wherever it is held (its replica is told; no
    /// other replica routes to it from now on).
    fn evict<'a>(&'a self, tenant: &'a str, digest: &'a str) -> BoxFuture<'a, ()>;
    /// Call `evicted` with the digest of each session of `tenant` another replica evicts.
    fn on_evicted(&self, tenant: &str, evicted: Evicted);
    /// Where session `id` of `tenant` lives.
    fn locate<'a>(
        &'a self,
        tenant: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Location, DirectoryDown>>;
}
