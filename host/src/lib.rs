//! Portcullis: a WebAssembly-extensible MCP gateway.
//!
//! One process serves the Model Context Protocol over Streamable HTTP (2025-03-26, 2025-06-18,
//! 2025-11-25 with sessions; 2026-07-28 stateless, all on one endpoint) and over stdio, and
//! routes every tool, resource and prompt request into a sandboxed WebAssembly component.
//!
//! The request path, as it runs (drawn in full in `docs/ARCHITECTURE.md`):
//!
//! ```text
//! HTTP ─► transport (host guard, tenant mount) ─► transport::front, in order:
//!           auth ─► sessions (owner; another replica's session ─► forwarded there) ─► body
//!           ─► tenancy (quota) ─► authz (scopes; a tool's approval) ─► sessions (cap)
//!      ─► mcp (handlers, eras, input rounds) ─► sandbox ─► plugin.wasm
//!                        downstream (egress guard, exchange) ◄┘ (WIT import)
//! stdio ─► mcp (a configured identity)
//! side modules: config (leaf), net, oauth, telemetry, plugins (loading, reload), authz
//!               (every authorization decision, Cedar policies), admin,
//!               dev_as (development AS), cluster (state shared on Redis)
//! ```
//!
//! * [`transport`]: listeners, the per-tenant front (`front`: the steps above, one function;
//!   `jsonrpc`: the envelope parsed once), Host/Origin allow-lists over every route, health
//!   endpoints, stdio.
//! * [`auth`]: who is calling; the rest of the host sees a [`auth::Principal`] — identity is
//!   (tenant, issuer, subject) — never a token.
//! * [`sessions`]: 2025 sessions' owners, caps and settings, behind one interface.
//! * [`tasks`]: MCP Tasks — tool calls that outlive their request, bound to their creator.
//! * [`cluster`]: replicas sharing state on Redis (the session directory, announcements).
//! * [`tenancy`]: which tenant a request belongs to and what it may consume (quotas).
//! * [`downstream`]: the plugins' only way out (credential strategies, egress guard).
//! * [`vault`]: users' grants at third-party providers, sealed (a file store; Redis in
//!   `cluster`).
//! * [`oauth`]: OAuth URNs and metadata discovery; [`net`]: address rules.
//! * [`telemetry`]: the log subscriber, OpenTelemetry spans and metrics.
//! * [`mcp`]: the protocol layer on rmcp (the only module that uses rmcp types).
//! * [`sandbox`]: wasmtime; fresh instance per call, deadlines, memory limits, empty WASI,
//!   one file per host capability.
//! * [`plugins`]: loading, validating and indexing plugins per tenant.
//! * [`authz`]: every authorization decision ([`authz::TenantAuthz::decide`]: scopes, claim
//!   rules, the tenant's Cedar policies).
//! * [`admin`]: the operators' endpoints (plugin inventory, readiness) and who is an operator.
//! * [`config`]: the TOML file, one file per section, and its validation.
//! * [`dev_as`]: the embedded development authorization server (off unless enabled).
//! * [`harness`]: `portcullis call`, one tool call in the real sandbox without a server.
//! * [`scaffold`]: `portcullis new`, plugin projects in each SDK's language.
//!
//! Start with [`Portcullis::start`], which turns a validated [`config::Config`] into a router.
//!
//! # Dependency rule
//!
//! Which modules each module may use (`crate::<module>`). The graph is acyclic; `cargo xtask
//! test` fails on an import this table does not allow, and on a cycle in the table. The
//! composition root (this file) may use every module.
//!
//! <!-- dependency-rule:start -->
//! | module     | may use                                                        |
//! |------------|----------------------------------------------------------------|
//! | config     |                                                                |
//! | net        |                                                                |
//! | oauth      |                                                                |
//! | telemetry  | config                                                         |
//! | sandbox    | config, telemetry                                              |
//! | auth       | config, net, oauth, telemetry                                  |
//! | plugins    | auth, config, oauth, sandbox, telemetry                        |
//! | authz      | auth, config, plugins                                          |
//! | vault      | config, telemetry                                              |
//! | downstream | audit, auth, config, net, oauth, sandbox, telemetry, vault     |
//! | tenancy    | auth, config, sandbox                                          |
//! | dev_as     | config, net, oauth, telemetry                                  |
//! | sessions   | auth, sandbox, telemetry                                       |
//! | tasks      | auth, config                                                   |
//! | audit      | auth, config, tasks, telemetry                                 |
//! | cluster    | auth, config, downstream, net, plugins, sandbox, sessions, tasks, telemetry, tenancy, vault |
//! | mcp        | audit, auth, authz, config, downstream, plugins, sandbox, sessions, tasks, telemetry, tenancy |
//! | admin      | auth, mcp, plugins                                             |
//! | transport  | admin, audit, auth, authz, config, mcp, net, oauth, sessions, telemetry, tenancy |
//! | fuzzing    | auth, config, downstream, mcp, plugins, sandbox                |
//! | scaffold   |                                                                |
//! | harness    | auth, config, mcp                                              |
//! <!-- dependency-rule:end -->

pub mod admin;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod cluster;
pub mod config;
pub mod dev_as;
pub mod downstream;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod harness;
pub mod mcp;
pub mod net;
pub mod oauth;
pub mod plugins;
pub mod sandbox;
pub mod scaffold;
pub mod sessions;
pub mod tasks;
pub mod telemetry;
pub mod tenancy;
pub mod transport;
pub mod vault;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::config::{AuthMode, Config};
use crate::mcp::{HttpSettings, TenantContext};
use crate::plugins::TenantPlugins;
use crate::sandbox::Sandbox;

/// A configured gateway: plugins loaded, endpoints built, ready to serve.
#[derive(Debug)]
pub struct Portcullis {
    config: Config,
    tenants: BTreeMap<String, Arc<TenantContext>>,
    router: axum::Router,
    dev_as: Option<Arc<dev_as::DevAs>>,
    shutdown: CancellationToken,
    /// Cancelled when shutdown begins: `/readyz` answers 503 from then on.
    draining: CancellationToken,
    /// With `[cluster]`, when serving: this replica's place in the cluster.
    cluster: Option<cluster::Cluster>,
    /// Reloads plugins while the gateway lives.
    _watcher: Option<plugins::watch::PluginWatcher>,
    /// Where the record of every decision goes.
    audit: audit::Audit,
}

impl Portcullis {
    /// Load every tenant's plugins and build the HTTP router: the composition root.
    ///
    /// Plugins that fail to load are logged and skipped; the rest serve. Fails only for
    /// problems that make serving impossible (engine, state key, unsupported settings).
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        Self::start_with(config, auth::KeyFetch::Background, Role::Server).await
    }

    /// [`Portcullis::start`] for stdio and one-shot commands: signing keys are fetched only
    /// when a token needs them (the issuer may be this gateway's own development AS, which
    /// is not listening).
    pub async fn start_local(config: Config) -> anyhow::Result<Self> {
        Self::start_with(config, auth::KeyFetch::OnDemand, Role::Command).await
    }

    /// [`Portcullis::start_local`] for serving stdio: it keeps the audit record too (never
    /// on standard output, which carries the protocol).
    pub async fn start_stdio(config: Config) -> anyhow::Result<Self> {
        Self::start_with(config, auth::KeyFetch::OnDemand, Role::Stdio).await
    }

    async fn start_with(config: Config, keys: auth::KeyFetch, role: Role) -> anyhow::Result<Self> {
        let serving = role == Role::Server;
        warn_if_unauthenticated(&config);
        let sandbox = Sandbox::new(&sandbox::SandboxConfig::from_config(&config))
            .context("starting the wasm engine")?;
        let loaded = plugins::load_all(&sandbox, &config).await;
        let shutdown = CancellationToken::new();
        let cluster = match &config.cluster {
            Some(c) if serving => {
                let key = state_key(&config)?.with_context(|| {
                    format!(
                        "{}: [cluster] needs server.state_key_env",
                        config.source.display()
                    )
                })?;
                Some(
                    cluster::Cluster::join(c, config.server.listen, &key, &shutdown)
                        .with_context(|| format!("{}: [cluster]", config.source.display()))?,
                )
            }
            _ => None,
        };
        // The record of every decision: a gateway serving HTTP or stdio writes one, a
        // one-shot command does not.
        let audit = match role {
            Role::Command => audit::Audit::off(),
            Role::Server | Role::Stdio => {
                if role == Role::Stdio && config.audit.stdout {
                    anyhow::bail!(
                        "{}: audit.stdout cannot be used on stdio, where standard output carries the protocol; use audit.file or audit.otlp",
                        config.source.display()
                    );
                }
                audit::Audit::from_config(&config)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", config.source.display()))?
            }
        };
        let (tenants, consent) =
            build_tenants(&config, &loaded, cluster.as_ref(), (&shutdown, &audit))?;
        if let Some(cluster) = &cluster {
            let plugins: Vec<_> = loaded.values().cloned().collect();
            cluster.relay_changes(&plugins, &shutdown);
            if let Some(key) = state_key(&config)? {
                let tables = tenants
                    .iter()
                    .map(|(id, t)| (id.clone(), t.tasks.clone()))
                    .collect();
                cluster.relay_task_controls(tables, &key, &shutdown);
            }
        }
        let audits: BTreeMap<String, audit::Audit> = tenants
            .iter()
            .map(|(id, t)| (id.clone(), t.audit.clone()))
            .collect();
        let on_reload: plugins::watch::OnReload = Box::new(move |tenant, catalog| {
            if let Some(audit) = audits.get(tenant) {
                audit.record(tenant, None, reloaded_plugins(catalog));
            }
        });
        let watcher = start_watcher(&config, &sandbox, loaded, on_reload, &shutdown);
        let in_order: Vec<Arc<TenantContext>> = config
            .tenants
            .iter()
            .map(|t| tenants[&t.id].clone())
            .collect();
        spawn_quota_upkeep(&in_order, shutdown.clone());
        let resource_server = match config.auth.mode {
            AuthMode::Oauth => Some(
                auth::ResourceServer::start(
                    &config.auth,
                    &config.trusted_issuers(),
                    keys,
                    state_key(&config)?.as_deref(),
                )
                .await
                .context("starting the OAuth resource server")?,
            ),
            AuthMode::None => None,
        };
        if let (Some(rs), Some(cluster)) = (&resource_server, &cluster) {
            rs.share_introspection_budget(cluster.introspection_budget());
            rs.share_dpop_replays(cluster.dpop_replays());
        }
        let settings = http_settings(&config, &shutdown);
        let directory = cluster
            .as_ref()
            .map(|c| c.directory(settings.session_idle, &shutdown));
        let draining = CancellationToken::new();
        let mut router = transport::router(
            &config,
            &in_order,
            &settings,
            resource_server,
            directory,
            draining.clone(),
        )?;
        let dev_as = if config.dev_as.enabled {
            let catalogs: Vec<_> = in_order.iter().map(|t| t.plugins.clone()).collect();
            let approvals: dev_as::DeclaredApprovals = {
                let catalogs = catalogs.clone();
                Arc::new(move || {
                    catalogs
                        .iter()
                        .flat_map(|p| p.catalog().declared_approvals())
                        .collect()
                })
            };
            let declared = Arc::new(move || {
                catalogs
                    .iter()
                    .flat_map(|p| p.catalog().declared_scopes())
                    .collect()
            });
            let dev = dev_as::DevAs::new(&config, declared, approvals)
                .context("starting the development authorization server")?;
            router = router.merge(dev.router());
            Some(dev)
        } else {
            None
        };
        if let Some(consent) = &consent {
            router = router.merge(consent.router());
        }
        // Last, so it covers every route: MCP, metadata, health, admin, consent and the dev AS.
        let router = transport::guard_hosts(router, &settings, &config.server.cors_origins);
        Ok(Self {
            config,
            tenants,
            router,
            dev_as,
            shutdown,
            draining,
            cluster,
            _watcher: watcher,
            audit,
        })
    }

    /// The HTTP router (tests drive it directly or serve it on an ephemeral port).
    pub fn router(&self) -> axum::Router {
        self.router.clone()
    }

    /// The configuration this gateway runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A tenant's context by id.
    pub fn tenant(&self, id: &str) -> Option<Arc<TenantContext>> {
        self.tenants.get(id).cloned()
    }

    /// Where the record of every decision goes (stop it last: it writes its final
    /// checkpoint).
    pub fn audit(&self) -> &audit::Audit {
        &self.audit
    }

    /// The development authorization server, when enabled.
    pub fn dev_as(&self) -> Option<Arc<dev_as::DevAs>> {
        self.dev_as.clone()
    }

    /// Every tenant's current plugin catalog, in configuration order.
    pub fn catalogs(&self) -> Vec<(String, Arc<plugins::Catalog>)> {
        self.config
            .tenants
            .iter()
            .map(|t| (t.id.clone(), self.tenants[&t.id].plugins.catalog()))
            .collect()
    }

    /// The tenant `portcullis stdio` serves: `[stdio] tenant`, else the first one.
    pub fn stdio_tenant(&self) -> Arc<TenantContext> {
        let id = self
            .config
            .stdio
            .tenant
            .clone()
            .unwrap_or_else(|| self.config.tenants[0].id.clone());
        self.tenants[&id].clone()
    }

    /// Cancelled to stop serving: open streams end and [`Portcullis::serve`] returns.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// What stops this gateway gracefully (SIGTERM): [`Stopper::stop`].
    pub fn stopper(&self) -> Stopper {
        Stopper {
            draining: self.draining.clone(),
            shutdown: self.shutdown.clone(),
            drain: Duration::from_millis(self.config.server.shutdown_drain_ms),
        }
    }

    /// Serve HTTP on `listener` until the shutdown token is cancelled, under the connection
    /// limits of `[server]`.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
        if let Some(dev) = &self.dev_as {
            dev.warn_served();
        }
        let server = &self.config.server;
        let limits = transport::listener::ServeLimits {
            header_read: Duration::from_millis(server.header_read_timeout_ms),
            body_read: Duration::from_millis(server.body_read_timeout_ms),
            idle: Duration::from_millis(server.idle_timeout_ms),
            write: Duration::from_millis(server.write_timeout_ms),
            max_connections: server.max_connections,
            max_per_client: server.max_connections_per_client,
            h2_max_streams: server.http2_max_concurrent_streams,
            grace: Duration::from_millis(server.shutdown_grace_ms),
        };
        // As the listener closes, not after the grace period: from then on the other replicas
        // answer 404 for this one's sessions rather than forward to it.
        let leaving = self.cluster.clone().map(|cluster| {
            let shutdown = self.shutdown.clone();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                cluster.leave().await;
            })
        });
        transport::listener::serve(listener, self.router, limits, self.shutdown).await?;
        if let Some(leaving) = leaving {
            // The withdrawal is part of stopping: a replica with nothing in flight must not
            // exit before its announcement is gone (each Redis command is bounded by
            // `cluster.redis_timeout_ms`; this bounds the whole).
            let bound = Duration::from_millis(server.shutdown_grace_ms.max(1000));
            if tokio::time::timeout(bound, leaving).await.is_err() {
                tracing::warn!(
                    "leaving the cluster did not finish in {bound:?}; the announcement expires with cluster.replica_ttl_ms"
                );
            }
        }
        Ok(())
    }
}

/// Stops a gateway in order: not ready (`/readyz` 503) while still serving for
/// `server.shutdown_drain_ms`, then the listener closes and requests in flight get
/// `server.shutdown_grace_ms` to finish (and, in a cluster, this replica leaves it).
#[derive(Debug, Clone)]
pub struct Stopper {
    draining: CancellationToken,
    shutdown: CancellationToken,
    drain: Duration,
}

impl Stopper {
    /// Begin stopping; returns once the listener is closing.
    pub async fn stop(self) {
        self.draining.cancel();
        if !self.drain.is_zero() {
            tracing::info!(drain = ?self.drain, "draining: /readyz answers 503, requests are still served");
            tokio::time::sleep(self.drain).await;
        }
        self.shutdown.cancel();
    }
}

fn warn_if_unauthenticated(config: &Config) {
    if config.auth.mode == AuthMode::None {
        tracing::warn!(
            "AUTHENTICATION IS OFF (auth.mode = \"none\"): every request acts as `{}` with scopes {:?}. \
             Use this only for local development and conformance testing.",
            config.auth.anonymous.subject,
            config.auth.anonymous.scopes
        );
    }
}

/// The authorization extensions `tenant` honours: machine tokens whenever it takes OAuth
/// tokens (a client-credentials token is a token like any other), identity assertions when it
/// trusts the development AS and that serves them.
fn auth_extensions(config: &Config, tenant: &config::TenantConfig) -> Vec<&'static str> {
    if config.auth.mode != AuthMode::Oauth {
        return Vec::new();
    }
    let mut out = vec![mcp::CLIENT_CREDENTIALS_EXTENSION];
    let dev = config.dev_as_issuer();
    let trusts_dev = config.trusted_issuers().iter().any(|i| i.issuer == dev)
        && (tenant.issuers.is_empty() || tenant.issuers.contains(&dev));
    if config.dev_as.enabled && !config.dev_as.enterprise_idps.is_empty() && trusts_dev {
        out.push(mcp::ENTERPRISE_MANAGED_EXTENSION);
    }
    out
}

/// The task table of `tenant`: shared on Redis with the other replicas in a cluster (its
/// records sealed under a key derived from `state_key`, which a cluster requires).
fn task_table(
    config: &Config,
    tenant: &config::TenantConfig,
    cluster: Option<&cluster::Cluster>,
    state_key: Option<&[u8]>,
) -> Arc<tasks::TaskTable> {
    let table = tasks::TaskTable::new(tasks::TaskSettings::from(&config.tasks));
    if let (Some(cluster), Some(key)) = (cluster, state_key) {
        table.share_through(Arc::from(tenant.id.as_str()), cluster.tasks(key));
    }
    table
}

/// The key sealing `requestState` (`server.state_key_env`), or `None` for a random one.
fn state_key(config: &Config) -> anyhow::Result<Option<Vec<u8>>> {
    let Some(var) = &config.server.state_key_env else {
        return Ok(None);
    };
    let at = || format!("{}: server.state_key_env", config.source.display());
    let key = config::secret_from_env(var).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
    anyhow::ensure!(
        key.len() >= 32,
        "{}: the key in {var} must be at least 32 bytes",
        at()
    );
    Ok(Some(key.into_bytes()))
}

/// The operator revokes one user's grant (`key`) in the vault `config` describes (on Redis
/// with `[cluster]`): whether there was one. The user's next call asks for consent again.
pub async fn revoke_grant(config: &Config, key: &vault::GrantKey<'_>) -> anyhow::Result<bool> {
    let shared = match &config.cluster {
        // Grants are sealed by the vault's keys; the cluster key authenticates nothing here.
        Some(section) => Some(
            cluster::Cluster::connect_only(section, b"")
                .with_context(|| format!("{}: [cluster]", config.source.display()))?
                .grants(),
        ),
        None => None,
    };
    let vault = vault::Vault::from_config(config, shared)?
        .ok_or_else(|| anyhow::anyhow!("{}: no [vault]", config.source.display()))?;
    Ok(vault.revoke(key).await?)
}

/// Every tenant's context: its loaded plugins, downstream services and quotas; and the
/// user-consent flow their services share, if any uses it.
#[allow(
    clippy::type_complexity,
    reason = "the tenants and the one consent flow"
)]
fn build_tenants(
    config: &Config,
    loaded: &BTreeMap<String, Arc<TenantPlugins>>,
    cluster: Option<&cluster::Cluster>,
    (shutdown, audit): (&CancellationToken, &audit::Audit),
) -> anyhow::Result<(
    BTreeMap<String, Arc<TenantContext>>,
    Option<Arc<downstream::Consent>>,
)> {
    let state_key = state_key(config)?;
    let shared_tokens = match (cluster, &config.cluster) {
        (Some(cluster), Some(section)) if !config.exchange_clients().is_empty() => Some(
            cluster
                .tokens(section)
                .with_context(|| format!("{}: [cluster]", config.source.display()))?,
        ),
        _ => None,
    };
    let oauth_clients = Arc::new(downstream::OAuthClients::from_config(
        config,
        shared_tokens,
    )?);
    let vault = vault::Vault::from_config(config, cluster.map(|c| c.grants()))?;
    let consent = downstream::Consent::from_config(
        config,
        vault,
        oauth_clients.clone(),
        cluster.map(|c| c.spent_states()),
    )?;
    let mut tenants = BTreeMap::new();
    for tenant in &config.tenants {
        let Some(plugins) = loaded.get(&tenant.id) else {
            continue;
        };
        let at = || {
            format!(
                "{}: tenant `{}` downstream services",
                config.source.display(),
                tenant.id
            )
        };
        let services = downstream::TenantServices::new(tenant, &oauth_clients, consent.as_ref())
            .with_context(at)?;
        let quotas = Arc::new(tenancy::quota::Quotas::new(
            &tenant.quota,
            config.instance_share(tenant),
            cluster.map(|c| tenancy::quota::Shared {
                tenant: Arc::from(tenant.id.as_str()),
                store: c.quotas(),
                without: config
                    .cluster
                    .as_ref()
                    .map(|c| c.quotas_without_redis)
                    .unwrap_or_default(),
            }),
        ));
        let audit = audit.for_tenant(tenant);
        let context = TenantContext::new(
            plugins.clone(),
            state_key.clone(),
            Arc::new(tenant_authz(config, tenant, plugins, (shutdown, &audit))?),
            Arc::new(services),
            quotas,
            task_table(config, tenant, cluster, state_key.as_deref()),
        )
        .with_auth_extensions(auth_extensions(config, tenant))
        .with_audit(audit);
        tenants.insert(tenant.id.clone(), Arc::new(context));
    }
    if let Some(consent) = &consent {
        // A completed consent is told to the tenant's sessions waiting for it, here and (with
        // replicas) on every other replica.
        let by_id = tenants.clone();
        let here: cluster::ConsentListener = Arc::new(move |key: &vault::GrantKey<'_>| {
            if let Some(tenant) = by_id.get(key.tenant) {
                tenant.consented(key.issuer, key.subject, key.service);
            }
        });
        consent.on_consented(here.clone());
        if let Some(cluster) = cluster {
            consent.on_consented(cluster.relay_consents(consent.vault().clone(), here, shutdown));
        }
    }
    Ok((tenants, consent))
}

/// The authorization of `tenant`: the built-in rules, and its Cedar policies when it has them
/// (read and checked against its plugins now, then watched for changes until `shutdown`).
fn tenant_authz(
    config: &Config,
    tenant: &config::TenantConfig,
    plugins: &Arc<TenantPlugins>,
    (shutdown, audit): (&CancellationToken, &audit::Audit),
) -> anyhow::Result<authz::TenantAuthz> {
    let authz = authz::TenantAuthz::new(plugins.tenant.clone(), config.auth.tools_list);
    let Some(policy) = &tenant.policy else {
        return Ok(authz);
    };
    let catalog = plugins.catalog();
    let mut files: Vec<std::path::PathBuf> = policy
        .files
        .iter()
        .map(|f| config.resolve_path(f))
        .collect();
    for name in &policy.suggested {
        let plugin = catalog
            .plugins
            .iter()
            .find(|p| &*p.name == name.as_str())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: tenant `{}` policy.suggested: no plugin `{name}` is loaded",
                    config.source.display(),
                    tenant.id
                )
            })?;
        files.push(plugin.suggested_policies().ok_or_else(|| {
            anyhow::anyhow!(
                "{}: tenant `{}` policy.suggested: the plugin `{name}` suggests no policies (no {} beside it)",
                config.source.display(),
                tenant.id,
                plugin.path.with_extension("cedar").display()
            )
        })?);
    }
    let policies = authz::policy::TenantPolicies::load(
        files,
        policy.mode,
        config.auth.claims.clone(),
        &catalog,
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "{}: tenant `{}` policy: {e}",
            config.source.display(),
            tenant.id
        )
    })?;
    let policies = Arc::new(policies);
    let watched = plugins.clone();
    let (audit, tenant_id) = (audit.clone(), plugins.tenant.clone());
    policies.clone().watch(
        plugins.tenant.clone(),
        move || watched.catalog(),
        move |reloaded| {
            let (serving, failed) = match reloaded {
                Ok(ids) => (ids, Vec::new()),
                Err(e) => (Vec::new(), vec![e]),
            };
            let what = audit::What::Reload {
                what: "policies",
                serving,
                failed,
            };
            audit.record(&tenant_id, None, what);
        },
        shutdown.clone(),
    );
    Ok(authz.with_policies(policies))
}

/// What a gateway is started for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// An HTTP server: it joins the cluster, if there is one, and keeps the audit record.
    Server,
    /// MCP on stdio: the audit record, no cluster.
    Stdio,
    /// A one-shot command (`check`, `call`, `policy test`): neither.
    Command,
}

/// A tenant's plugins after a reload, as the audit record names them: each plugin with its
/// version (12 hex of its SHA-256), and the files that failed (the previous version serving).
fn reloaded_plugins(catalog: &plugins::Catalog) -> audit::What {
    audit::What::Reload {
        what: "plugins",
        serving: catalog
            .plugins
            .iter()
            .map(|p| format!("{}@{}", p.name, &p.sha256[..12]))
            .collect(),
        failed: catalog.failures.iter().map(|f| f.error.clone()).collect(),
    }
}

/// The plugin watcher, when `sandbox.watch` is on. Without one the gateway still serves what
/// it loaded; say so loudly.
fn start_watcher(
    config: &Config,
    sandbox: &Sandbox,
    loaded: BTreeMap<String, Arc<TenantPlugins>>,
    on_reload: plugins::watch::OnReload,
    shutdown: &CancellationToken,
) -> Option<plugins::watch::PluginWatcher> {
    if !config.sandbox.watch {
        return None;
    }
    plugins::watch::start(
        sandbox.clone(),
        Arc::new(config.clone()),
        loaded,
        (
            Duration::from_millis(config.sandbox.reload_debounce_ms),
            on_reload,
        ),
        shutdown.clone(),
    )
    .inspect_err(|e| {
        tracing::error!("hot reload is OFF: cannot watch the plugin files: {e:#} (on Linux, check fs.inotify.max_user_instances)");
    })
    .ok()
}

/// The MCP endpoints' settings. Their event streams end `server.shutdown_grace_ms` after
/// `shutdown` (not at once: an answer in flight on a stream is let finish, as the listener
/// lets requests in flight finish).
fn http_settings(config: &Config, shutdown: &CancellationToken) -> HttpSettings {
    let (allowed_hosts, allowed_origins) = transport::allowed_hosts_and_origins(config);
    let streams_end = CancellationToken::new();
    let (grace, end, shutdown) = (
        Duration::from_millis(config.server.shutdown_grace_ms),
        streams_end.clone(),
        shutdown.clone(),
    );
    tokio::spawn(async move {
        shutdown.cancelled().await;
        tokio::time::sleep(grace).await;
        end.cancel();
    });
    HttpSettings {
        allowed_hosts,
        allowed_origins,
        max_body_bytes: config.server.max_body_bytes,
        session_idle: Duration::from_secs(config.server.session_idle_timeout_secs),
        shutdown: streams_end,
    }
}

/// Forget idle subjects' rate-limit buckets every minute, so their memory stays bounded by
/// the subjects active recently.
fn spawn_quota_upkeep(tenants: &[Arc<TenantContext>], shutdown: CancellationToken) {
    let tenants: Vec<_> = tenants.iter().map(|t| t.quotas.clone()).collect();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = every.tick() => tenants.iter().for_each(|q| q.forget_idle_subjects()),
                () = shutdown.cancelled() => return,
            }
        }
    });
}
