//! Per-call store state, and the traits the host capabilities forward to.
//!
//! A [`HostState`] lives exactly as long as one call's [`wasmtime::Store`]: empty WASI, the
//! memory limiter, and one context per host capability (`super::host`). The capabilities
//! forward to a [`CallObserver`] (logging, progress, change notifications) and an [`Egress`]
//! (the downstream capability), both prepared by their owners for the call, so this module
//! stays free of MCP and HTTP details.

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::CallEnv;
use super::bindings::{downstream, host};
use super::host::{EgressCtx, ObserverCtx};
use super::output::{Stream, TracingOutput};

/// Receives what a running plugin reports through the `host` interface.
///
/// Implementations decide what reaches the client (for example only log levels the client
/// asked for, only increasing progress values). All methods must return promptly.
pub trait CallObserver: Send + Sync {
    /// A log message from the plugin.
    fn log(
        &self,
        level: host::LogLevel,
        logger: Option<String>,
        message: String,
    ) -> BoxFuture<'_, ()>;
    /// A progress report from the plugin.
    fn progress(
        &self,
        progress: f64,
        total: Option<f64>,
        message: Option<String>,
    ) -> BoxFuture<'_, ()>;
    /// The plugin says its lists changed.
    fn lists_changed(&self, kinds: host::ListKinds);
    /// The plugin says a resource changed.
    fn resource_updated(&self, uri: String);
}

/// The plugin's only way out of the sandbox (the WIT `downstream` interface).
pub trait Egress: Send + Sync {
    /// Send `request` to the logical service `service`.
    fn fetch(
        &self,
        service: String,
        request: downstream::Request,
    ) -> BoxFuture<'_, Result<downstream::Response, downstream::Error>>;
}

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Egress for a plugin with no downstream services: every fetch is refused with a clear error.
#[derive(Debug, Default)]
pub struct NoEgress;

impl Egress for NoEgress {
    fn fetch(
        &self,
        service: String,
        _request: downstream::Request,
    ) -> BoxFuture<'_, Result<downstream::Response, downstream::Error>> {
        Box::pin(async move {
            Err(downstream::Error::UnknownService(format!(
                "no downstream service named `{service}` is configured for this tenant"
            )))
        })
    }
}

/// Tracks memory growth against the call's limit and remembers a denial, so a trap that
/// follows can be reported as "memory limit" rather than a generic crash.
pub(crate) struct Limiter {
    memory_bytes: usize,
    denied: Option<usize>,
}

/// Most table elements one instance may have (function references, not memory).
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl Limiter {
    pub(crate) fn denied(&self) -> Option<usize> {
        self.denied
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.denied = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// Everything one call's store holds.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: Limiter,
    /// The `host` import's state (logs, progress, change notifications).
    pub(super) observer: ObserverCtx,
    /// The `downstream` import's state.
    pub(super) egress: EgressCtx,
}

impl HostState {
    pub(crate) fn new(env: &CallEnv) -> Self {
        // Deny by default: no preopens, env, args or network; clocks and randomness only.
        let wasi = WasiCtxBuilder::new()
            .stdout(TracingOutput::new(env.plugin.clone(), Stream::Stdout))
            .stderr(TracingOutput::new(env.plugin.clone(), Stream::Stderr))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter {
                memory_bytes: env.limits.memory_bytes,
                denied: None,
            },
            observer: ObserverCtx(env.observer.clone()),
            egress: EgressCtx(env.egress.clone()),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
