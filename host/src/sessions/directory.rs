//! Which replica holds each 2025 session, when several replicas serve one endpoint.
//!
//! Owns the interface ([`Directory`]) a shared store implements (`cluster` does, on Redis) and
//! the answer it gives ([`Location`]). Must not: know how the store works or how a request
//! reaches another replica (`transport` forwards it).

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
    /// Session `id` ended here (best effort).
    fn release<'a>(&'a self, tenant: &'a str, id: &'a str) -> BoxFuture<'a, ()>;
    /// Where session `id` of `tenant` lives.
    fn locate<'a>(
        &'a self,
        tenant: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Location, DirectoryDown>>;
}
