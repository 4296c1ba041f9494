//! The host side of the plugin's imports, one capability per file (the wasmtime-wasi
//! pattern): each has a context in [`HostState`], a `HasData` marker projecting the store onto
//! it, its `Host` impl and its `link`.
//!
//! Owns: which WIT interfaces the host provides and how they reach their contexts. A new
//! capability (key-value, secrets) adds a WIT interface, a file here with its context and
//! `link`, one field in [`HostState`], one line in [`link_all`] and a trait its provider
//! implements — nothing in `mcp` changes. Must not: implement a capability's policy (the
//! providers behind [`super::CallObserver`] and [`super::Egress`] do).

mod downstream;
mod log;

use wasmtime::component::{HasSelf, Linker};

use super::bindings::types;
use super::state::HostState;
pub(super) use downstream::EgressCtx;
pub(super) use log::ObserverCtx;

impl types::Host for HostState {}

/// Link every host capability (WASI is linked by the engine).
pub(super) fn link_all(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    types::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    log::link(linker)?;
    downstream::link(linker)?;
    Ok(())
}
