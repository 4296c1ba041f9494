//! The wasm sandbox: compiles plugin components and runs each call in a fresh instance.
//!
//! Owns everything wasmtime: the [`Engine`] and its pooling allocator, the epoch ticker, the
//! linker with WASI and the Portcullis host imports, per-call stores with CPU, wall-clock and
//! memory limits, and the mapping of traps to [`SandboxError`]. It must not know about MCP,
//! HTTP or tokens: callers hand it a [`CallEnv`] (limits, cancellation, an observer for the
//! host imports) and plain data from the WIT package, re-exported as [`wit`].
//!
//! Isolation model: a plugin is compiled once into an [`InstancePre`]; every call gets a new
//! [`Store`] and instance from the pool, so no memory survives between calls, users or
//! tenants. The WASI context is empty: no preopened directories, no environment, no
//! arguments, no sockets or name lookups; stdout/stderr go to `tracing`. Imports the host
//! does not provide are defined as traps, so a plugin importing more than it may still loads
//! and fails only if it actually calls them.

mod artifacts;
mod bindings;
mod host;
mod output;
mod state;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use wasmtime::component::{Component, Instance, InstancePre, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
    UpdateDeadline,
};

use crate::telemetry::{self, keys};
use state::HostState;
pub use state::{BoxFuture, CallObserver, Egress, NoEgress};

/// The WIT package's data types, for the rest of the host.
pub mod wit {
    pub use super::bindings::approvals::ApprovalRule;
    pub use super::bindings::completion::{CompletionResult, Reference};
    pub use super::bindings::downstream::{
        Error as FetchError, Request as FetchRequest, Response as FetchResponse,
    };
    pub use super::bindings::host::{ListKinds, LogLevel};
    pub use super::bindings::prompts::{
        GetOutcome, Prompt, PromptArgument, PromptError, PromptMessage, PromptResult, Role,
    };
    pub use super::bindings::resources::{ReadOutcome, Resource, ResourceError, ResourceTemplate};
    pub use super::bindings::tasks::{TaskInput, TaskSupport, TaskTool};
    pub use super::bindings::tools::{CallOutcome, Tool, ToolAnnotations, ToolError, ToolResult};
    pub use super::bindings::types::{
        Binary, CallContext, ClientFeatures, Content, Continuation, Elicitation, InputRequest,
        InputRequired, InputResponse, KeyedRequest, ResourceBody, ResourceContents, ResourceLink,
    };
}

/// How often the epoch advances; deadlines are enforced with this granularity.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Per pool slot, the linear memory kept resident between calls (when the kernel can report
/// which pages a call dirtied; only those are reset). Covers a Rust guest's 1 MiB shadow stack
/// and a few MiB of heap above it; the rest of a slot is returned to the kernel as before.
const KEEP_RESIDENT_MEMORY: usize = 4 << 20;

/// Per pool slot, the table bytes kept resident between calls (same mechanism).
const KEEP_RESIDENT_TABLE: usize = 64 << 10;

/// Engine-wide settings: the pool sizes bound the whole process.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// Instances that may exist at once across all plugins (the pool size).
    pub max_instances: u32,
    /// Hard ceiling on any plugin's linear memory; per-plugin limits must be at or below it.
    pub max_memory_bytes: usize,
    /// Where compiled artifacts are kept across restarts; `None` compiles every time.
    pub cache_dir: Option<std::path::PathBuf>,
    /// Most bytes of artifacts kept there.
    pub cache_max_bytes: u64,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            max_instances: crate::config::DEFAULT_MAX_INSTANCES,
            max_memory_bytes: crate::config::DEFAULT_MAX_MEMORY_MB << 20,
            cache_dir: None,
            cache_max_bytes: 1 << 30,
        }
    }
}

impl SandboxConfig {
    /// The engine-wide settings `[sandbox]` describes.
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            max_instances: config.sandbox.max_instances,
            max_memory_bytes: config.sandbox.max_memory_mb << 20,
            cache_dir: config.cache_dir(),
            cache_max_bytes: config.sandbox.cache_max_mb.saturating_mul(1 << 20),
        }
    }
}

/// Limits for each call into one plugin.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Wall-clock deadline for one call, covering CPU time and time blocked in host calls.
    pub deadline: Duration,
    /// Linear memory one instance may grow to.
    pub memory_bytes: usize,
    /// Instances of this plugin that may run at once; more calls wait (within the deadline).
    pub max_concurrency: usize,
}

impl Limits {
    /// These limits with the keys `section` sets replaced (`[limits]`, `[tenant.limits]`,
    /// `[tenant.plugin.<name>]`: unset keys inherit).
    pub fn overridden_by(&self, section: &crate::config::LimitsSection) -> Self {
        Self {
            deadline: section
                .deadline_ms
                .map_or(self.deadline, Duration::from_millis),
            memory_bytes: section.memory_mb.map_or(self.memory_bytes, |mb| mb << 20),
            max_concurrency: section.max_concurrency.unwrap_or(self.max_concurrency),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(30),
            memory_bytes: 64 << 20,
            max_concurrency: 64,
        }
    }
}

/// Why a call into a plugin did not produce a value.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The call ran past its deadline and was stopped.
    #[error("the plugin did not finish within its {0:?} deadline and was stopped")]
    Timeout(Duration),
    /// The plugin tried to grow its memory past its limit.
    #[error(
        "the plugin exceeded its memory limit of {limit} bytes (it asked for {requested} bytes)"
    )]
    MemoryLimit {
        /// The configured limit.
        limit: usize,
        /// What the plugin asked for.
        requested: usize,
    },
    /// The plugin trapped (panicked, hit `unreachable`, divided by zero, …).
    #[error("the plugin crashed: {0}")]
    Trap(String),
    /// The client cancelled the request; the instance was torn down.
    #[error("the request was cancelled")]
    Cancelled,
    /// The plugin has too many calls in flight and none finished in time.
    #[error("the plugin is at its concurrency limit ({0} calls in flight)")]
    Busy(usize),
    /// The caller's share of the instance pool is in use and no instance freed up in time.
    #[error("all {0} plugin instances of this tenant's share are busy and none finished in time")]
    ShareBusy(usize),
    /// The instance could not be created (for example the instance pool is exhausted).
    #[error("the plugin could not be started: {0}")]
    Instantiate(String),
}

impl SandboxError {
    /// A fixed word for the outcome, for metrics and span attributes.
    pub fn cause(&self) -> &'static str {
        match self {
            SandboxError::Timeout(_) => "timeout",
            SandboxError::MemoryLimit { .. } => "memory_limit",
            SandboxError::Trap(_) => "trap",
            SandboxError::Cancelled => "cancelled",
            SandboxError::Busy(_) => "busy",
            SandboxError::ShareBusy(_) => "tenant_busy",
            SandboxError::Instantiate(_) => "instantiate",
        }
    }
}

/// Why a component could not be loaded as a plugin.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a valid WebAssembly component.
    #[error("{path} is not a valid WebAssembly component: {reason}")]
    NotAComponent {
        /// The file.
        path: String,
        /// What wasmtime said.
        reason: String,
    },
    /// The component does not implement the Portcullis plugin world.
    #[error("{path} does not implement the portcullis:plugin world: {reason}")]
    WrongWorld {
        /// The file.
        path: String,
        /// What is missing or mistyped.
        reason: String,
    },
    /// One instance would take more of the pool than any plugin may.
    #[error("{path} is too large to run: {reason}")]
    TooLarge {
        /// The file.
        path: String,
        /// The numbers: what it needs and the budget.
        reason: String,
    },
    /// Describing itself (list-tools and friends) failed.
    #[error("{path} failed while describing itself: {source}")]
    Describe {
        /// The file.
        path: String,
        /// What went wrong in the sandbox.
        source: SandboxError,
    },
}

/// The shared engine, linker and epoch ticker. Cheap to clone.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<SandboxInner>,
}

struct SandboxInner {
    engine: Engine,
    /// Plugin calls that outlast their first time slice continue here, off the runtime
    /// serving HTTP: a plugin burning CPU holds an I/O thread for one slice at most.
    workers: Workers,
    linker: Linker<HostState>,
    artifacts: Option<artifacts::ArtifactCache>,
    compiled: AtomicU64,
    from_cache: AtomicU64,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox").finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Build the engine (pooling allocator, epoch interruption) and the linker, and start the
    /// epoch ticker thread, which stops when the last clone of this sandbox is dropped.
    pub fn new(config: &SandboxConfig) -> anyhow::Result<Self> {
        let mut pool = PoolingAllocationConfig::new();
        let instances = config.max_instances.max(1);
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(Footprint::CORE_INSTANCES_PER_UNIT))
            .total_memories(instances.saturating_mul(Footprint::MEMORIES_PER_UNIT))
            .total_tables(instances.saturating_mul(Footprint::TABLES_PER_UNIT))
            .total_stacks(instances)
            .max_memory_size(config.max_memory_bytes)
            .max_core_instances_per_component(Footprint::MAX_CORE_INSTANCES)
            .max_memories_per_component(Footprint::MAX_MEMORIES)
            .max_tables_per_component(Footprint::MAX_TABLES);
        if PoolingAllocationConfig::is_pagemap_scan_available() {
            // Reset a returned slot by rewriting only the pages the call dirtied, instead of
            // `madvise` dropping them: the next call on the slot takes no page faults, and
            // no TLB shootdown interrupts the other cores. Without the ioctl (Linux < 6.7),
            // keeping memory resident would `memset` the whole span on every call, so the
            // default (`madvise`) stays.
            pool.pagemap_scan(wasmtime::Enabled::Yes)
                .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY)
                .table_keep_resident(KEEP_RESIDENT_TABLE);
        }
        let mut cfg = Config::new();
        cfg.wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(1 << 20)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&cfg)?;

        let mut linker: Linker<HostState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        host::link_all(&mut linker)?;

        let artifacts = config.cache_dir.as_ref().and_then(|dir| {
            artifacts::ArtifactCache::open(dir, &engine, config.cache_max_bytes)
                .inspect_err(|e| {
                    tracing::error!(dir = %dir.display(),
                        "the compiled-plugin cache is OFF (every plugin compiles): sandbox.cache_dir: {e}")
                })
                .ok()
        });
        let inner = Arc::new(SandboxInner {
            workers: Workers::start()?,
            engine,
            linker,
            artifacts,
            compiled: AtomicU64::new(0),
            from_cache: AtomicU64::new(0),
        });
        spawn_epoch_ticker(Arc::downgrade(&inner));
        Ok(Self { inner })
    }

    /// Compile `bytes` (read from `path`, named in errors) and check that the component
    /// implements the plugin world. Blocking and CPU-heavy: call it off the async runtime.
    pub fn compile(&self, path: &Path, bytes: &[u8]) -> Result<PluginCode, LoadError> {
        let path_s = path.display().to_string();
        let cached = self
            .inner
            .artifacts
            .as_ref()
            .and_then(|c| c.load(&self.inner.engine, bytes));
        let from_cache = cached.is_some();
        let component = match cached {
            Some(c) => {
                self.inner.from_cache.fetch_add(1, Ordering::Relaxed);
                c
            }
            None => {
                let c = Component::new(&self.inner.engine, bytes).map_err(|e| {
                    LoadError::NotAComponent {
                        path: path_s.clone(),
                        reason: format!("{e:#}"),
                    }
                })?;
                self.inner.compiled.fetch_add(1, Ordering::Relaxed);
                c
            }
        };
        if let Some(old) = older_plugin_world(&component, &self.inner.engine) {
            return Err(LoadError::WrongWorld {
                path: path_s,
                reason: format!(
                    "the plugin was built for `{old}`; this gateway serves portcullis:plugin@0.2.0 \
                     (the call context gained `issuer`): rebuild it against wit/plugin.wit"
                ),
            });
        }
        let footprint = Footprint::measure(&component, bytes);
        if let Some(over) = footprint.over_budget() {
            return Err(LoadError::TooLarge {
                path: path_s,
                reason: over,
            });
        }
        let mut linker = self.inner.linker.clone();
        stub_foreign_imports(&mut linker, &component, &self.inner.engine).map_err(|e| {
            LoadError::WrongWorld {
                path: path_s.clone(),
                reason: format!("{e:#}"),
            }
        })?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::WrongWorld {
                path: path_s.clone(),
                reason: format!("{e:#}"),
            })?;
        let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld {
            path: path_s.clone(),
            reason: format!("{e:#}"),
        };
        let exports = Exports {
            tools: bindings::tools::GuestIndices::new(&pre).map_err(wrong_world)?,
            resources: bindings::resources::GuestIndices::new(&pre).ok(),
            prompts: bindings::prompts::GuestIndices::new(&pre).ok(),
            completion: bindings::completion::GuestIndices::new(&pre).ok(),
            tasks: bindings::tasks::GuestIndices::new(&pre).ok(),
            approvals: bindings::approvals::GuestIndices::new(&pre).ok(),
        };
        // Only components that fit the plugin world are worth keeping.
        if let (Some(cache), false) = (&self.inner.artifacts, from_cache) {
            cache.store(bytes, &component);
        }
        Ok(PluginCode {
            sandbox: self.clone(),
            pre,
            exports: Arc::new(exports),
            instances: Arc::default(),
            from_cache,
            footprint,
        })
    }

    /// Components compiled from source so far (cache misses included).
    pub fn compiled_count(&self) -> u64 {
        self.inner.compiled.load(Ordering::Relaxed)
    }

    /// Components loaded from the artifact cache so far.
    pub fn cache_hits(&self) -> u64 {
        self.inner.from_cache.load(Ordering::Relaxed)
    }
}

/// The WASI 0.2 interfaces the host links (`wasmtime_wasi::p2::add_to_linker_async`), by
/// package and interface; any 0.2.x minor matches (the linker matches semver).
const WASI_INTERFACES: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stderr",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stderr",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:filesystem/preopens",
    "wasi:filesystem/types",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:random/random",
    "wasi:sockets/instance-network",
    "wasi:sockets/ip-name-lookup",
    "wasi:sockets/network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
];

/// The `portcullis:plugin` interfaces the host links ([`host::link_all`]).
const PLUGIN_INTERFACES: &[&str] = &[
    "portcullis:plugin/types",
    "portcullis:plugin/host",
    "portcullis:plugin/downstream",
];

/// Whether the host links an import: exactly the interfaces listed above, at a compatible
/// version (WASI 0.2.x, this package's 0.2.x). Anything else (`wasi:http`, `wasi:keyvalue`, a
/// plugin's own packages) gets trap stubs.
fn provided_by_host(import: &str) -> bool {
    let Some((interface, version)) = import.rsplit_once('@') else {
        return false;
    };
    version.starts_with("0.2.")
        && (WASI_INTERFACES.contains(&interface) || PLUGIN_INTERFACES.contains(&interface))
}

/// The host's type of a resource a provided interface defines, for the stubs of foreign
/// interfaces that use it: wasi:io's, which other WASI packages build on (wasi:http's bodies
/// are wasi:io streams). The types are the ones wasmtime-wasi's bindings map them to.
fn host_resource(interface: &str, resource: &str) -> Option<wasmtime::component::ResourceType> {
    use wasmtime::component::ResourceType;
    use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, IoError};
    Some(match (interface, resource) {
        ("wasi:io/poll", "pollable") => ResourceType::host::<DynPollable>(),
        ("wasi:io/streams", "input-stream") => ResourceType::host::<DynInputStream>(),
        ("wasi:io/streams", "output-stream") => ResourceType::host::<DynOutputStream>(),
        ("wasi:io/error", "error") => ResourceType::host::<IoError>(),
        _ => return None,
    })
}

/// What one instance of a component takes from the engine-wide pool: core instances,
/// memories and tables, measured at load. A call holds `units()` permits of its tenant's
/// share, one unit being one slot of each pool resource in the proportion the pool is
/// sized (1 component instance, 4 core instances, 2 memories, 4 tables): so no tenant can
/// take more of any pool resource than its share, however its components are built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// Core module instances per component instance.
    pub core_instances: u32,
    /// Linear memories defined.
    pub memories: u32,
    /// Tables defined.
    pub tables: u32,
}

impl Footprint {
    const CORE_INSTANCES_PER_UNIT: u32 = 4;
    const MEMORIES_PER_UNIT: u32 = 2;
    const TABLES_PER_UNIT: u32 = 4;
    /// The per-instance budget: a component needing more is refused at load.
    const MAX_CORE_INSTANCES: u32 = 50;
    const MAX_MEMORIES: u32 = 4;
    const MAX_TABLES: u32 = 16;

    /// Count what `component` (compiled from `bytes`) instantiates.
    fn measure(component: &Component, bytes: &[u8]) -> Self {
        let required = component.resources_required();
        let mut core_instances = 0u32;
        for payload in wasmparser::Parser::new(0).parse_all(bytes).flatten() {
            if let wasmparser::Payload::InstanceSection(reader) = payload {
                core_instances += reader
                    .into_iter()
                    .flatten()
                    .filter(|i| matches!(i, wasmparser::Instance::Instantiate { .. }))
                    .count() as u32;
            }
        }
        Self {
            core_instances: core_instances.max(1),
            memories: required.as_ref().map_or(0, |r| r.num_memories),
            tables: required.as_ref().map_or(0, |r| r.num_tables),
        }
    }

    /// Pool units one instance takes (at least 1).
    pub fn units(&self) -> u32 {
        self.core_instances
            .div_ceil(Self::CORE_INSTANCES_PER_UNIT)
            .max(self.memories.div_ceil(Self::MEMORIES_PER_UNIT))
            .max(self.tables.div_ceil(Self::TABLES_PER_UNIT))
            .max(1)
    }

    /// Why this footprint exceeds the per-instance budget, if it does.
    fn over_budget(&self) -> Option<String> {
        let over = |what: &str, n: u32, max: u32| {
            (n > max)
                .then(|| format!("one instance needs {n} {what}; the per-instance budget is {max}"))
        };
        over(
            "core instances",
            self.core_instances,
            Self::MAX_CORE_INSTANCES,
        )
        .or_else(|| over("memories", self.memories, Self::MAX_MEMORIES))
        .or_else(|| over("tables", self.tables, Self::MAX_TABLES))
    }
}

/// The first `portcullis:plugin` interface of an older package version the component exports.
fn older_plugin_world(component: &Component, engine: &Engine) -> Option<String> {
    component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name)
        .find(|name| name.starts_with("portcullis:plugin/") && name.contains("@0.1."))
        .map(str::to_string)
}

/// Define every import the host does not provide as a function that traps when called, so a
/// plugin that imports more than it may still loads and fails only if it uses those imports.
///
/// Not `Linker::define_unknown_imports_as_traps`: that matches names exactly, so a plugin
/// built against WASI 0.2.6 would get traps instead of the host's semver-compatible 0.2.x.
fn stub_foreign_imports(
    linker: &mut Linker<HostState>,
    component: &Component,
    engine: &Engine,
) -> wasmtime::Result<()> {
    use wasmtime::component::types::ComponentItem;
    let ty = component.component_type();
    // A foreign interface may use a resource the host provides (`wasi:http/types` uses
    // `wasi:io/streams`' `input-stream`): there the stub must name the host's own type.
    let mut provided_resources = Vec::new();
    for (name, item) in ty.imports(engine) {
        let (Some((interface, _)), ComponentItem::ComponentInstance(instance)) =
            (name.rsplit_once('@'), item.ty)
        else {
            continue;
        };
        if !provided_by_host(name) {
            continue;
        }
        for (export, export_item) in instance.exports(engine) {
            if let (ComponentItem::Resource(local), Some(host)) =
                (export_item.ty, host_resource(interface, export))
            {
                provided_resources.push((local, host));
            }
        }
    }
    let resource_type = |local: &wasmtime::component::ResourceType| {
        provided_resources
            .iter()
            .find(|(l, _)| l == local)
            .map_or_else(
                wasmtime::component::ResourceType::host::<()>,
                |(_, host)| *host,
            )
    };
    for (name, item) in ty.imports(engine) {
        if provided_by_host(name) {
            continue;
        }
        match item.ty {
            ComponentItem::ComponentFunc(_) => {
                let fq = name.to_string();
                linker.root().func_new(name, move |_, _, _, _| {
                    wasmtime::bail!("the host does not provide `{fq}`")
                })?;
            }
            ComponentItem::ComponentInstance(instance) => {
                let mut inst = linker.instance(name)?;
                for (export, export_item) in instance.exports(engine) {
                    match export_item.ty {
                        ComponentItem::ComponentFunc(_) => {
                            let fq = format!("{name}#{export}");
                            inst.func_new(export, move |_, _, _, _| {
                                wasmtime::bail!("the host does not provide `{fq}`")
                            })?;
                        }
                        ComponentItem::Resource(local) => {
                            inst.resource(export, resource_type(&local), |_, _| Ok(()))?;
                        }
                        _ => {}
                    }
                }
            }
            ComponentItem::Resource(_) => {
                linker.root().resource(
                    name,
                    wasmtime::component::ResourceType::host::<()>(),
                    |_, _| Ok(()),
                )?;
            }
            _ => wasmtime::bail!(
                "the component imports `{name}`, which is neither a function nor an interface"
            ),
        }
    }
    Ok(())
}

/// Advance the engine's epoch every [`EPOCH_TICK`] until the sandbox is gone.
/// The runtime plugin calls run on, with one worker per core.
struct Workers(Option<tokio::runtime::Runtime>);

impl Workers {
    fn start() -> anyhow::Result<Self> {
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("portcullis-plugin")
            .enable_all()
            .build()?;
        Ok(Self(Some(rt)))
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("the plugin runtime lives as long as the sandbox")
            .handle()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // The last sandbox handle may be dropped on an async thread, where a blocking
        // shutdown would panic; calls in flight were cancelled with their requests.
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// A spawned call that is aborted when its caller stops waiting (the client went away).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

fn spawn_epoch_ticker(inner: Weak<SandboxInner>) {
    std::thread::Builder::new()
        .name("portcullis-epoch".into())
        .spawn(move || {
            while let Some(inner) = inner.upgrade() {
                inner.engine.increment_epoch();
                drop(inner);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}

/// Which plugin interfaces a component exports.
struct Exports {
    tools: bindings::tools::GuestIndices,
    resources: Option<bindings::resources::GuestIndices>,
    prompts: Option<bindings::prompts::GuestIndices>,
    completion: Option<bindings::completion::GuestIndices>,
    tasks: Option<bindings::tasks::GuestIndices>,
    approvals: Option<bindings::approvals::GuestIndices>,
}

/// Everything a single call needs besides its arguments.
#[derive(Clone)]
pub struct CallEnv {
    /// The plugin's name, for logs and errors.
    pub plugin: Arc<str>,
    /// Limits for this call.
    pub limits: Limits,
    /// Cancelled when the client cancels or disconnects: the instance is torn down.
    pub cancel: CancellationToken,
    /// Receives the plugin's log, progress and change notifications.
    pub observer: Arc<dyn CallObserver>,
    /// The plugin's way out (the downstream capability).
    pub egress: Arc<dyn Egress>,
    /// Bounds this plugin's concurrent instances.
    pub concurrency: Arc<Semaphore>,
    /// The pool units of every plugin sharing it (a tenant's share of the pool).
    pub share: Share,
    /// How the call appears in traces and metrics.
    pub labels: CallLabels,
}

/// A tenant's share of the instance pool, in units ([`Footprint::units`]).
#[derive(Clone, Debug)]
pub struct Share {
    /// One permit per unit.
    pub permits: Arc<Semaphore>,
    /// Its size, for messages.
    pub size: u32,
}

/// How a call is described in traces and metrics (no effect on what it may do).
#[derive(Clone, Debug)]
pub struct CallLabels {
    /// Whose call this is (the tenant).
    pub owner: Arc<str>,
    /// The plugin's version (its component digest).
    pub version: Arc<str>,
    /// The span the call's span belongs under (`Span::none()` for loads).
    pub parent: tracing::Span,
}

type CallFuture<'s, R> = Pin<Box<dyn Future<Output = wasmtime::Result<R>> + Send + 's>>;

/// How many instances of one plugin version were created, are alive, and were alive at once.
#[derive(Default)]
struct InstanceCounts {
    created: std::sync::atomic::AtomicU64,
    live: std::sync::atomic::AtomicU64,
    peak: std::sync::atomic::AtomicU64,
}

/// One live instance, counted until dropped.
struct Live<'a>(&'a InstanceCounts);

impl<'a> Live<'a> {
    fn start(counts: &'a InstanceCounts) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        counts.created.fetch_add(1, Relaxed);
        let now = counts.live.fetch_add(1, Relaxed) + 1;
        counts.peak.fetch_max(now, Relaxed);
        Self(counts)
    }
}

impl Drop for Live<'_> {
    fn drop(&mut self) {
        self.0
            .live
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A compiled plugin, ready to instantiate. Cheap to clone.
#[derive(Clone)]
pub struct PluginCode {
    sandbox: Sandbox,
    pre: InstancePre<HostState>,
    exports: Arc<Exports>,
    /// Instances created so far (every call, including describing itself at load), alive
    /// now, and alive at once at most.
    instances: Arc<InstanceCounts>,
    /// Whether this code came from the artifact cache rather than a compile.
    from_cache: bool,
    /// What one instance takes from the pool.
    footprint: Footprint,
}

impl std::fmt::Debug for PluginCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginCode")
            .field("resources", &self.exports.resources.is_some())
            .field("prompts", &self.exports.prompts.is_some())
            .field("completion", &self.exports.completion.is_some())
            .finish()
    }
}

impl PluginCode {
    /// Whether this code was loaded from the artifact cache instead of compiled.
    pub fn from_cache(&self) -> bool {
        self.from_cache
    }

    /// What one instance of this plugin takes from the pool.
    pub fn footprint(&self) -> Footprint {
        self.footprint
    }

    /// Whether the plugin exports the `resources` interface.
    pub fn has_resources(&self) -> bool {
        self.exports.resources.is_some()
    }

    /// Whether the plugin exports the `prompts` interface.
    pub fn has_prompts(&self) -> bool {
        self.exports.prompts.is_some()
    }

    /// Whether the plugin exports the `completion` interface.
    pub fn has_completion(&self) -> bool {
        self.exports.completion.is_some()
    }

    /// How many instances of this plugin have been created (one per call).
    pub fn instances_created(&self) -> u64 {
        self.instances
            .created
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many instances of this plugin are alive now.
    pub fn live_instances(&self) -> u64 {
        self.instances
            .live
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The most instances of this plugin that were alive at once.
    pub fn peak_instances(&self) -> u64 {
        self.instances
            .peak
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Run `call` (the export `export`, about `item`) in a fresh instance under `env`'s
    /// limits (its first time slice here, the rest on the plugin runtime), inside a
    /// `plugin.call` span, recording its duration and outcome.
    async fn run<R: Send + 'static>(
        &self,
        env: &CallEnv,
        (export, item): (&'static str, Option<&str>),
        call: impl for<'s> FnOnce(&'s mut Store<HostState>, Instance) -> CallFuture<'s, R>
        + Send
        + 'static,
    ) -> Result<R, SandboxError> {
        use tracing::Instrument as _;
        let labels = &env.labels;
        let span =
            telemetry::plugin_span(&labels.parent, &env.plugin, &labels.version, export, item);
        let started = Instant::now();
        let (code, task_env) = (self.clone(), env.clone());
        let mut work = Box::pin(
            async move { code.run_limited(&task_env, started, call).await }
                .instrument(span.clone()),
        );
        // Most calls finish within their first epoch slice: run that slice here and skip the
        // hop to the plugin runtime. A call that yields (its slice ran out, or it waits for a
        // permit or a host call) continues on the plugin runtime, so a busy plugin holds this
        // thread for one slice at most.
        let first = std::future::poll_fn(|cx| std::task::Poll::Ready(work.as_mut().poll(cx))).await;
        let result = match first {
            std::task::Poll::Ready(r) => r,
            std::task::Poll::Pending => {
                let task = self.sandbox.inner.workers.handle().spawn(work);
                match AbortOnDrop(task).await {
                    Ok(r) => r,
                    Err(e) if e.is_cancelled() => Err(SandboxError::Cancelled),
                    Err(e) => Err(SandboxError::Trap(format!("the call's task failed: {e}"))),
                }
            }
        };
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => {
                telemetry::fail(&span, e.cause());
                if let SandboxError::Trap(why) = e {
                    span.record(
                        "portcullis.trap.cause",
                        why.chars().take(160).collect::<String>(),
                    );
                }
                e.cause()
            }
        };
        span.record(keys::OUTCOME, outcome);
        let m = telemetry::metrics::get();
        let attrs = telemetry::metrics::attrs(
            &labels.owner,
            &[
                (keys::PLUGIN, &env.plugin),
                ("portcullis.plugin.export", export),
                (keys::OUTCOME, outcome),
            ],
        );
        m.plugin_duration
            .record(started.elapsed().as_secs_f64(), &attrs);
        if matches!(
            &result,
            Err(SandboxError::Trap(_)
                | SandboxError::Timeout(_)
                | SandboxError::MemoryLimit { .. })
        ) {
            m.traps.add(1, &attrs);
        }
        result
    }

    async fn run_limited<R: Send>(
        &self,
        env: &CallEnv,
        started: Instant,
        call: impl for<'s> FnOnce(&'s mut Store<HostState>, Instance) -> CallFuture<'s, R> + Send,
    ) -> Result<R, SandboxError> {
        let deadline = started + env.limits.deadline;
        let _permit = tokio::select! {
            permit = env.concurrency.clone().acquire_owned() => permit.map_err(|_| SandboxError::Cancelled)?,
            () = tokio::time::sleep_until(deadline.into()) => return Err(SandboxError::Busy(env.limits.max_concurrency)),
            () = env.cancel.cancelled() => return Err(SandboxError::Cancelled),
        };
        // An instance takes as many units of the share as its footprint in the pool.
        let units = self.footprint.units();
        let size = env.share.size as usize;
        let _share = tokio::select! {
            permit = env.share.permits.clone().acquire_many_owned(units) => permit.map_err(|_| SandboxError::Cancelled)?,
            () = tokio::time::sleep_until(deadline.into()) => return Err(SandboxError::ShareBusy(size)),
            () = env.cancel.cancelled() => return Err(SandboxError::Cancelled),
        };
        if Instant::now() >= deadline {
            // The share freed up only as this call's own time ran out.
            return Err(SandboxError::ShareBusy(size));
        }

        let _live = Live::start(&self.instances);
        let mut store = Store::new(&self.sandbox.inner.engine, HostState::new(env));
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            // Yield to the runtime every tick so a busy plugin never pins a worker thread, and
            // stop it once its deadline has passed.
            if Instant::now() >= deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });

        let outcome = {
            let work = async {
                let instance = self
                    .pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(Failure::Instantiate)?;
                call(&mut store, instance).await.map_err(Failure::Run)
            };
            tokio::select! {
                r = work => Some(r),
                () = tokio::time::sleep_until(deadline.into()) => None,
                () = env.cancel.cancelled() => return Err(SandboxError::Cancelled),
            }
        };
        let limiter = &store.data().limiter;
        match outcome {
            None => Err(SandboxError::Timeout(env.limits.deadline)),
            Some(Ok(value)) => Ok(value),
            Some(Err(e)) => Err(classify(e, limiter.denied(), &env.limits)),
        }
    }

    /// The plugin's tools.
    pub async fn list_tools(&self, env: &CallEnv) -> Result<Vec<wit::Tool>, SandboxError> {
        let idx = self.exports.tools.clone();
        self.run(env, ("list-tools", None), move |store, inst| {
            Box::pin(async move { idx.load(&mut *store, &inst)?.call_list_tools(store).await })
        })
        .await
    }

    /// Call one tool.
    pub async fn call_tool(
        &self,
        env: &CallEnv,
        ctx: wit::CallContext,
        name: String,
        arguments: String,
        continuation: Option<wit::Continuation>,
    ) -> Result<Result<wit::CallOutcome, wit::ToolError>, SandboxError> {
        let idx = self.exports.tools.clone();
        let item = name.clone();
        self.run(
            env,
            ("call-tool", Some(item.as_str())),
            move |store, inst| {
                Box::pin(async move {
                    let guest = idx.load(&mut *store, &inst)?;
                    guest
                        .call_call_tool(store, &ctx, &name, &arguments, continuation.as_ref())
                        .await
                })
            },
        )
        .await
    }

    /// The plugin's resources and resource templates (empty if it exports none).
    pub async fn list_resources(
        &self,
        env: &CallEnv,
    ) -> Result<(Vec<wit::Resource>, Vec<wit::ResourceTemplate>), SandboxError> {
        let Some(idx) = self.exports.resources.clone() else {
            return Ok(Default::default());
        };
        self.run(env, ("list-resources", None), move |store, inst| {
            Box::pin(async move {
                let guest = idx.load(&mut *store, &inst)?;
                let resources = guest.call_list_resources(&mut *store).await?;
                let templates = guest.call_list_resource_templates(store).await?;
                Ok((resources, templates))
            })
        })
        .await
    }

    /// Read one resource. `Ok(Err(NotFound))` if the plugin exports no resources.
    pub async fn read_resource(
        &self,
        env: &CallEnv,
        ctx: wit::CallContext,
        uri: String,
        continuation: Option<wit::Continuation>,
    ) -> Result<Result<wit::ReadOutcome, wit::ResourceError>, SandboxError> {
        let Some(idx) = self.exports.resources.clone() else {
            return Ok(Err(wit::ResourceError::NotFound));
        };
        let item = uri.clone();
        self.run(
            env,
            ("read-resource", Some(item.as_str())),
            move |store, inst| {
                Box::pin(async move {
                    let guest = idx.load(&mut *store, &inst)?;
                    guest
                        .call_read_resource(store, &ctx, &uri, continuation.as_ref())
                        .await
                })
            },
        )
        .await
    }

    /// The tools the plugin runs as MCP Tasks (none unless it exports `tasks`).
    pub async fn task_tools(&self, env: &CallEnv) -> Result<Vec<wit::TaskTool>, SandboxError> {
        let Some(idx) = self.exports.tasks.clone() else {
            return Ok(Vec::new());
        };
        self.run(env, ("task-tools", None), move |store, inst| {
            Box::pin(async move { idx.load(&mut *store, &inst)?.call_task_tools(store).await })
        })
        .await
    }

    /// The tools a person must approve call by call (none unless it exports `approvals`).
    pub async fn approval_rules(
        &self,
        env: &CallEnv,
    ) -> Result<Vec<wit::ApprovalRule>, SandboxError> {
        let Some(idx) = self.exports.approvals.clone() else {
            return Ok(Vec::new());
        };
        self.run(env, ("approval-rules", None), move |store, inst| {
            Box::pin(async move {
                idx.load(&mut *store, &inst)?
                    .call_approval_rules(store)
                    .await
            })
        })
        .await
    }

    /// The plugin's prompts (empty if it exports none).
    pub async fn list_prompts(&self, env: &CallEnv) -> Result<Vec<wit::Prompt>, SandboxError> {
        let Some(idx) = self.exports.prompts.clone() else {
            return Ok(Vec::new());
        };
        self.run(env, ("list-prompts", None), move |store, inst| {
            Box::pin(async move { idx.load(&mut *store, &inst)?.call_list_prompts(store).await })
        })
        .await
    }

    /// Render one prompt. `Ok(Err(UnknownPrompt))` if the plugin exports no prompts.
    pub async fn get_prompt(
        &self,
        env: &CallEnv,
        ctx: wit::CallContext,
        name: String,
        arguments: Vec<(String, String)>,
        continuation: Option<wit::Continuation>,
    ) -> Result<Result<wit::GetOutcome, wit::PromptError>, SandboxError> {
        let Some(idx) = self.exports.prompts.clone() else {
            return Ok(Err(wit::PromptError::UnknownPrompt));
        };
        let item = name.clone();
        self.run(
            env,
            ("get-prompt", Some(item.as_str())),
            move |store, inst| {
                Box::pin(async move {
                    let guest = idx.load(&mut *store, &inst)?;
                    guest
                        .call_get_prompt(store, &ctx, &name, &arguments, continuation.as_ref())
                        .await
                })
            },
        )
        .await
    }

    /// Complete an argument. `Ok(None)` if the plugin exports no completion.
    pub async fn complete(
        &self,
        env: &CallEnv,
        ctx: wit::CallContext,
        reference: wit::Reference,
        argument: (String, String),
        context: Vec<(String, String)>,
    ) -> Result<Option<Result<wit::CompletionResult, String>>, SandboxError> {
        let Some(idx) = self.exports.completion.clone() else {
            return Ok(None);
        };
        self.run(env, ("complete", None), move |store, inst| {
            Box::pin(async move {
                let guest = idx.load(&mut *store, &inst)?;
                guest
                    .call_complete(store, &ctx, &reference, &argument.0, &argument.1, &context)
                    .await
                    .map(Some)
            })
        })
        .await
    }
}

/// Where a call failed: creating the instance, or running it.
enum Failure {
    Instantiate(wasmtime::Error),
    Run(wasmtime::Error),
}

/// Turn a wasmtime failure into the reason a caller can act on.
fn classify(failure: Failure, memory_denied: Option<usize>, limits: &Limits) -> SandboxError {
    if let Some(requested) = memory_denied {
        return SandboxError::MemoryLimit {
            limit: limits.memory_bytes,
            requested,
        };
    }
    let e = match failure {
        Failure::Instantiate(e) if e.downcast_ref::<Trap>().is_none() => {
            return SandboxError::Instantiate(format!("{e:#}"));
        }
        Failure::Instantiate(e) | Failure::Run(e) => e,
    };
    // The caller (and through it the client) gets the cause; the wasm backtrace is for
    // the plugin's author, in the gateway's debug log.
    tracing::debug!(error = %format!("{e:#}"), "plugin call failed");
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => SandboxError::Timeout(limits.deadline),
        Some(trap) => SandboxError::Trap(trap.to_string()),
        None => SandboxError::Trap(e.root_cause().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::provided_by_host;

    #[test]
    fn the_host_provides_exactly_what_it_links() {
        for linked in [
            "wasi:io/streams@0.2.9",
            "wasi:cli/environment@0.2.0",
            "wasi:random/insecure-seed@0.2.12",
            "portcullis:plugin/downstream@0.2.0",
        ] {
            assert!(provided_by_host(linked), "{linked}");
        }
        for foreign in [
            "wasi:http/types@0.2.10",
            "wasi:http/outgoing-handler@0.2.10",
            "wasi:keyvalue/store@0.2.0-draft",
            "wasi:io/streams@0.3.0",
            "wasi:clocks/timezone@0.2.9",
            "wasi:io",
            "portcullis:plugin/tools@0.2.0",
            "portcullis:plugin/host@0.1.0",
            "fixture:foreign/api@0.1.0",
        ] {
            assert!(!provided_by_host(foreign), "{foreign}");
        }
    }
}
