//! The plugin registry: which plugins a tenant serves, and what each one offers.
//!
//! Owns loading (read, compile off the async runtime, ask the plugin to describe itself),
//! validation (tool names, schemas, approval rules, duplicates across plugins), operator
//! overrides (scopes, limits, config values, approval rules) and the immutable [`Catalog`] snapshot each request reads. A plugin
//! that fails to load is recorded with its reason and the others keep serving. This module
//! must not speak MCP: the `mcp` module turns catalog entries into protocol answers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub mod bounds;
pub mod schema;
pub mod watch;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, broadcast};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, TenantConfig};
pub use crate::oauth::approval::ApprovalRule;
use crate::sandbox::{
    BoxFuture, CallEnv, CallLabels, CallObserver, Limits, LoadError, NoEgress, PluginCode, Sandbox,
    Share, wit,
};

/// One loaded plugin version. Immutable; a reload builds a new one.
#[derive(Debug)]
pub struct LoadedPlugin {
    /// The plugin's name (its file stem).
    pub name: Arc<str>,
    /// Where it was loaded from.
    pub path: PathBuf,
    /// SHA-256 of the component bytes, hex.
    pub sha256: String,
    /// Changes when the component or its manifest changes (reloads reuse unchanged plugins).
    source_key: String,
    /// The operator manifest its settings came from, if it has one.
    pub manifest: Option<PathBuf>,
    /// The compiled component.
    pub code: PluginCode,
    /// Per-call limits.
    pub limits: Limits,
    /// Bounds concurrent calls into this plugin.
    pub concurrency: Arc<Semaphore>,
    /// Operator configuration passed in each call context.
    pub config: Vec<(String, String)>,
    /// Claim rules per tool: claim → required value.
    pub claim_rules: BTreeMap<String, BTreeMap<String, String>>,
    /// Tools a person must approve call by call, by tool name (#32).
    pub approvals: BTreeMap<String, ApprovalRule>,
    /// Downstream services the operator granted this plugin.
    pub services: Arc<[String]>,
    /// Tools, with operator scope overrides applied.
    pub tools: Vec<wit::Tool>,
    /// Each tool's compiled schemas, by tool name.
    pub schemas: std::collections::HashMap<String, schema::ToolSchemas>,
    /// The tools that run as MCP Tasks, by tool name (the plugin's `tasks` export).
    pub task_tools: std::collections::HashMap<String, TaskMode>,
    /// Direct resources.
    pub resources: Vec<wit::Resource>,
    /// Resource templates.
    pub templates: Vec<wit::ResourceTemplate>,
    /// Prompts.
    pub prompts: Vec<wit::Prompt>,
    /// When it was loaded.
    pub loaded_at: SystemTime,
    /// How long compiling and describing took.
    pub load_time: Duration,
}

/// How a tool runs as an MCP Task (see `interface tasks` in `wit/plugin.wit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskMode {
    /// Only as a task (a client without task support is refused), not just when possible.
    pub required: bool,
    /// Questions asked within the inline window are answered before the task exists.
    pub input_first: bool,
}

/// The claim rule a caller's claims did not satisfy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("claim `{claim}` must contain `{wanted}`")]
pub struct ClaimRule {
    /// The claim.
    pub claim: String,
    /// The value it must be (or, for an array claim, contain).
    pub wanted: String,
}

impl LoadedPlugin {
    /// The policies the plugin suggests (`<name>.cedar` beside its component), if it ships
    /// them: a tenant enables them with `[tenant.policy] suggested`.
    pub fn suggested_policies(&self) -> Option<PathBuf> {
        let file = self.path.with_extension("cedar");
        file.is_file().then_some(file)
    }

    /// Whether `claims` (name, JSON value text) satisfy `tool`'s claim rules; the error is
    /// the rule that failed.
    pub fn claims_permit(&self, tool: &str, claims: &[(String, String)]) -> Result<(), ClaimRule> {
        let Some(rules) = self.claim_rules.get(tool) else {
            return Ok(());
        };
        for (claim, wanted) in rules {
            let value = claims
                .iter()
                .find(|(k, _)| k == claim)
                .and_then(|(_, v)| serde_json::from_str::<serde_json::Value>(v).ok());
            let ok = match &value {
                Some(serde_json::Value::String(s)) => s == wanted,
                Some(serde_json::Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(wanted)),
                _ => false,
            };
            if !ok {
                return Err(ClaimRule {
                    claim: claim.clone(),
                    wanted: wanted.clone(),
                });
            }
        }
        Ok(())
    }
}

/// A plugin that failed to load, and why.
#[derive(Debug, Clone)]
pub struct LoadFailure {
    /// The file.
    pub path: PathBuf,
    /// The reason, naming the file.
    pub error: String,
}

/// What a tenant serves right now. Immutable; replaced atomically on change.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Loaded plugins in load order.
    pub plugins: Vec<Arc<LoadedPlugin>>,
    /// Plugins that failed to load.
    pub failures: Vec<LoadFailure>,
    tools: BTreeMap<String, (Arc<LoadedPlugin>, usize)>,
    prompts: BTreeMap<String, (Arc<LoadedPlugin>, usize)>,
    resources: BTreeMap<String, (Arc<LoadedPlugin>, usize)>,
    /// Which catalog this is: a number no other catalog of this process has, so what is
    /// derived from a catalog (the policies' schema) can tell when it is out of date.
    pub generation: u64,
}

/// The next catalog's [`Catalog::generation`].
fn next_generation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Catalog {
    /// Every scope an item of this catalog requires (as declared, or as the operator
    /// overrode it): what clients must be able to obtain from the authorization server.
    pub fn declared_scopes(&self) -> std::collections::BTreeSet<String> {
        let tools = self.tools().flat_map(|(_, t)| &t.required_scopes);
        let prompts = self.prompts().flat_map(|(_, p)| &p.required_scopes);
        let resources = self.resources().flat_map(|(_, r)| &r.required_scopes);
        let templates = self.templates().flat_map(|(_, t)| &t.required_scopes);
        tools
            .chain(prompts)
            .chain(resources)
            .chain(templates)
            .cloned()
            .collect()
    }

    /// All tools in name order, with their plugin.
    pub fn tools(&self) -> impl Iterator<Item = (&Arc<LoadedPlugin>, &wit::Tool)> {
        self.tools.values().map(|(p, i)| (p, &p.tools[*i]))
    }

    /// The tool called `name`.
    pub fn tool(&self, name: &str) -> Option<(&Arc<LoadedPlugin>, &wit::Tool)> {
        self.tools.get(name).map(|(p, i)| (p, &p.tools[*i]))
    }

    /// The approval tool `name` requires, if any.
    pub fn approval(&self, name: &str) -> Option<&ApprovalRule> {
        let (plugin, _) = self.tool(name)?;
        plugin.approvals.get(name)
    }

    /// The tenant's tools that need a person's approval of each call: name, title, rule.
    pub fn approval_rules(&self) -> impl Iterator<Item = (&str, Option<&str>, &ApprovalRule)> {
        self.tools.iter().filter_map(|(name, (p, i))| {
            let title = p.tools[*i].title.as_deref();
            p.approvals
                .get(name)
                .map(|rule| (name.as_str(), title, rule))
        })
    }

    /// The approval rules in force, as the metadata and the development AS take them.
    pub fn declared_approvals(&self) -> Vec<crate::oauth::approval::Declared> {
        self.approval_rules()
            .map(|(tool, title, rule)| crate::oauth::approval::Declared {
                tool: tool.to_string(),
                title: title.map(str::to_string),
                rule: rule.clone(),
            })
            .collect()
    }

    /// All prompts in name order.
    pub fn prompts(&self) -> impl Iterator<Item = (&Arc<LoadedPlugin>, &wit::Prompt)> {
        self.prompts.values().map(|(p, i)| (p, &p.prompts[*i]))
    }

    /// The prompt called `name`.
    pub fn prompt(&self, name: &str) -> Option<(&Arc<LoadedPlugin>, &wit::Prompt)> {
        self.prompts.get(name).map(|(p, i)| (p, &p.prompts[*i]))
    }

    /// All direct resources in URI order.
    pub fn resources(&self) -> impl Iterator<Item = (&Arc<LoadedPlugin>, &wit::Resource)> {
        self.resources.values().map(|(p, i)| (p, &p.resources[*i]))
    }

    /// All resource templates, plugin by plugin.
    pub fn templates(&self) -> impl Iterator<Item = (&Arc<LoadedPlugin>, &wit::ResourceTemplate)> {
        self.plugins
            .iter()
            .flat_map(|p| p.templates.iter().map(move |t| (p, t)))
    }

    /// The plugin serving `uri` and the scopes it requires: a direct resource first, then the
    /// first template that matches.
    pub fn resource_owner(&self, uri: &str) -> Option<(&Arc<LoadedPlugin>, &[String])> {
        if let Some((p, i)) = self.resources.get(uri) {
            return Some((p, &p.resources[*i].required_scopes));
        }
        self.templates()
            .find(|(_, t)| template_matches(&t.uri_template, uri))
            .map(|(p, t)| (p, t.required_scopes.as_slice()))
    }

    /// The plugin owning the resource template `uri_template`.
    pub fn template_owner(&self, uri_template: &str) -> Option<&Arc<LoadedPlugin>> {
        self.templates()
            .find(|(_, t)| t.uri_template == uri_template)
            .map(|(p, _)| p)
    }

    /// The plugin serving `target` and the scopes it declares, if it exists.
    pub fn lookup(&self, target: Target<'_>) -> Option<(&Arc<LoadedPlugin>, &[String])> {
        match target {
            Target::Tool(name) => self
                .tool(name)
                .map(|(p, t)| (p, t.required_scopes.as_slice())),
            Target::Prompt(name) => self
                .prompt(name)
                .map(|(p, t)| (p, t.required_scopes.as_slice())),
            Target::Resource(uri) => self.resource_owner(uri),
            Target::Template(template) => self
                .templates()
                .find(|(_, t)| t.uri_template == template)
                .map(|(p, t)| (p, t.required_scopes.as_slice())),
        }
    }
}

/// What a request targets: with the caller, the only input to an authorization decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// A tool, by name (`tools/call`, `tools/list`).
    Tool(&'a str),
    /// A prompt, by name (`prompts/get`, `prompts/list`, completion of its arguments).
    Prompt(&'a str),
    /// A resource, by URI: a direct resource or one a template matches (`resources/read`,
    /// `resources/subscribe`, `subscriptions/listen`, `resources/list`).
    Resource(&'a str),
    /// A resource template, by its URI template (`resources/templates/list`, completion).
    Template(&'a str),
}

impl<'a> Target<'a> {
    /// The name or URI the target is looked up by.
    pub fn key(&self) -> &'a str {
        match *self {
            Target::Tool(k) | Target::Prompt(k) | Target::Resource(k) | Target::Template(k) => k,
        }
    }
}

/// Whether `uri` matches an RFC 6570 level-1 template (each `{var}` matches one or more
/// characters other than `/`).
pub fn template_matches(template: &str, uri: &str) -> bool {
    let mut rest = uri;
    let mut parts = template.split('{');
    let Some(prefix) = parts.next() else {
        return false;
    };
    let Some(r) = rest.strip_prefix(prefix) else {
        return false;
    };
    rest = r;
    for part in parts {
        let Some((_var, literal)) = part.split_once('}') else {
            return false;
        };
        // The variable takes everything up to the next literal (or the end), but never a '/'.
        let end = if literal.is_empty() {
            rest.len()
        } else {
            match rest.find(literal) {
                Some(i) => i,
                None => return false,
            }
        };
        let value = &rest[..end];
        if value.is_empty() || value.contains('/') {
            return false;
        }
        rest = &rest[end + literal.len()..];
    }
    rest.is_empty()
}

/// Which lists changed (tools, prompts, resources), or a resource that was updated.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// One or more lists changed.
    Lists {
        /// The tool list changed.
        tools: bool,
        /// The prompt list changed.
        prompts: bool,
        /// The resource list changed.
        resources: bool,
    },
    /// A resource's content changed.
    ResourceUpdated(String),
}

/// Carries the changes plugins report to the other replicas serving the same tenants (each
/// reloads the shared plugin files itself, so catalog changes are not relayed).
pub trait ChangeRelay: Send + Sync {
    /// Tell the other replicas that `tenant`'s plugins reported `change`.
    fn relay(&self, tenant: &str, change: &Change);
}

/// One tenant's plugins: the current catalog and a feed of changes.
pub struct TenantPlugins {
    /// The tenant id.
    pub tenant: Arc<str>,
    catalog: ArcSwap<Catalog>,
    changes: broadcast::Sender<Change>,
    /// With several replicas: where the changes plugins report also go.
    relay: std::sync::OnceLock<Arc<dyn ChangeRelay>>,
}

impl std::fmt::Debug for TenantPlugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantPlugins")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl TenantPlugins {
    /// The current catalog. Calls in flight keep the snapshot they started with.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.load_full()
    }

    /// Subscribe to list and resource changes.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Announce a change to every subscriber here.
    pub fn announce(&self, change: Change) {
        // No subscribers is fine.
        let _ = self.changes.send(change);
    }

    /// A plugin reported `change`: announce it here and relay it to the other replicas.
    pub fn report(&self, change: Change) {
        if let Some(relay) = self.relay.get() {
            relay.relay(&self.tenant, &change);
        }
        self.announce(change);
    }

    /// Relay the changes plugins report through `relay` from now on (set once).
    pub fn relay_through(&self, relay: Arc<dyn ChangeRelay>) {
        let _ = self.relay.set(relay);
    }

    /// Replace the catalog and announce the lists that changed (a list changes when an entry
    /// appears, disappears, or now comes from another plugin version). Returns whether any
    /// list changed.
    pub fn publish(&self, catalog: Catalog) -> bool {
        fn version<'a>(
            entries: impl Iterator<Item = (&'a String, &'a (Arc<LoadedPlugin>, usize))>,
        ) -> Vec<(String, String)> {
            entries
                .map(|(k, (p, _))| (k.clone(), p.source_key.clone()))
                .collect()
        }
        let old = self.catalog.load();
        let tools = version(old.tools.iter()) != version(catalog.tools.iter());
        let prompts = version(old.prompts.iter()) != version(catalog.prompts.iter());
        let templates = |c: &Catalog| -> Vec<String> {
            c.templates()
                .map(|(p, t)| format!("{}:{}", t.uri_template, p.source_key))
                .collect()
        };
        let resources = version(old.resources.iter()) != version(catalog.resources.iter())
            || templates(&old) != templates(&catalog);
        drop(old);
        self.catalog.store(Arc::new(catalog));
        let changed = tools || prompts || resources;
        if changed {
            self.announce(Change::Lists {
                tools,
                prompts,
                resources,
            });
        }
        changed
    }
}

/// Load every plugin a tenant lists. Failures are recorded in the catalog, not returned.
pub async fn load_tenant(
    sandbox: &Sandbox,
    config: &Config,
    tenant: &TenantConfig,
) -> TenantPlugins {
    let catalog = build_catalog(sandbox, config, tenant, &Catalog::default()).await;
    let (changes, _) = broadcast::channel(64);
    TenantPlugins {
        tenant: Arc::from(tenant.id.as_str()),
        catalog: ArcSwap::from_pointee(catalog),
        changes,
        relay: std::sync::OnceLock::new(),
    }
}

/// The manifest file for a plugin file: `<stem>.toml` beside it.
pub fn manifest_path(wasm: &Path) -> PathBuf {
    wasm.with_extension("toml")
}

/// A manifest beside `wasm` that was meant for it but is named otherwise (cargo writes
/// `word_count.wasm` for a crate `word-count`; its manifest written as `word-count.toml` was
/// silently ignored, and the scope it tightened did not apply): the same name but for case and
/// `-`/`_`, or within two edits of a name of six letters or more, and not another
/// component's manifest.
pub fn manifest_near_miss(wasm: &Path) -> Option<PathBuf> {
    let dir = wasm.parent()?;
    let name = plugin_name(wasm);
    let entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    let stem = |p: &Path| p.file_stem().map(|s| s.to_string_lossy().into_owned());
    let components: Vec<String> = entries
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .filter_map(|p| stem(p))
        .collect();
    entries
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .filter(|p| stem(p).is_some_and(|s| s != name && !components.contains(&s)))
        .find(|p| {
            let s = stem(p).unwrap_or_default();
            normalized(&s) == normalized(&name)
                || (name.len() >= 6 && edit_distance(&normalized(&s), &normalized(&name)) <= 2)
        })
        .cloned()
}

/// Build a tenant's catalog from its files. Plugins whose component and manifest are
/// unchanged since `previous` are reused as they are; a plugin whose new version fails to
/// load keeps serving its previous version, and the failure is recorded.
pub async fn build_catalog(
    sandbox: &Sandbox,
    config: &Config,
    tenant: &TenantConfig,
    previous: &Catalog,
) -> Catalog {
    let files = expand_plugin_paths(config, tenant);
    let stems = stems(&files);
    let mut catalog = Catalog {
        generation: next_generation(),
        ..Catalog::default()
    };
    let total = files.len();
    for (n, file) in files.into_iter().enumerate() {
        let file = match file {
            Ok(f) => f,
            Err(failure) => {
                keep_previous(
                    &mut catalog,
                    previous,
                    &tenant.id,
                    failure.path,
                    failure.error,
                );
                continue;
            }
        };
        let plugin = match load_file(sandbox, config, tenant, previous, &file).await {
            Ok((plugin, fresh)) => {
                if fresh {
                    log_loaded(&tenant.id, &plugin, (n + 1, total));
                }
                plugin
            }
            Err(error) => {
                keep_previous(&mut catalog, previous, &tenant.id, file, error);
                continue;
            }
        };
        if let Err(error) = add_to_catalog(&mut catalog, plugin) {
            keep_previous(&mut catalog, previous, &tenant.id, file, error);
        }
    }
    for problem in settings_naming_none_of(config, tenant, &stems) {
        // A plugin directory may get the plugin later; `portcullis check` refuses it.
        tracing::warn!(tenant = %tenant.id, "{problem}");
    }
    catalog
}

/// The `[tenant.plugin.NAME]` sections that name none of the tenant's plugin files (settings
/// are keyed by the file stem: cargo writes `my_plugin.wasm` for a crate `my-plugin`), each
/// with the stem it probably means.
pub fn unmatched_settings(config: &Config, tenant: &TenantConfig) -> Vec<String> {
    settings_naming_none_of(config, tenant, &stems(&expand_plugin_paths(config, tenant)))
}

/// The plugin names (file stems) of the listed files.
fn stems(files: &[Result<PathBuf, LoadFailure>]) -> Vec<String> {
    files.iter().flatten().map(|p| plugin_name(p)).collect()
}

/// [`unmatched_settings`] for a tenant whose plugin files have the names `stems`.
fn settings_naming_none_of(
    config: &Config,
    tenant: &TenantConfig,
    stems: &[String],
) -> Vec<String> {
    tenant
        .plugin
        .keys()
        .filter(|key| !stems.contains(key))
        .map(|key| {
            let hint = match closest(key, stems) {
                Some(stem) => format!("did you mean `{stem}`?"),
                None if stems.is_empty() => "the tenant has no plugin files".to_string(),
                None => format!("its plugins are: {}", stems.join(", ")),
            };
            format!(
                "{}: tenant `{}`: [tenant.plugin.{key}] names no plugin file of this tenant \
                 (settings are keyed by the file's stem); {hint}",
                config.source.display(),
                tenant.id
            )
        })
        .collect()
}

/// A plugin name as a near miss is compared: lowercase, `-` as `_`.
fn normalized(name: &str) -> String {
    name.to_ascii_lowercase().replace('-', "_")
}

/// The name in `names` that `wanted` most likely means: the same but for case and `-`/`_`,
/// else the nearest within a few edits.
fn closest<'n>(wanted: &str, names: &'n [String]) -> Option<&'n str> {
    if let Some(same) = names.iter().find(|n| normalized(n) == normalized(wanted)) {
        return Some(same);
    }
    names
        .iter()
        .map(|n| (edit_distance(&normalized(n), &normalized(wanted)), n))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n.as_str())
}

/// Levenshtein distance (names are short).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The plugin in `file`: the previous version when neither its component nor its settings
/// changed (`false`), else freshly loaded (`true`).
async fn load_file(
    sandbox: &Sandbox,
    config: &Config,
    tenant: &TenantConfig,
    previous: &Catalog,
    file: &Path,
) -> Result<(Arc<LoadedPlugin>, bool), String> {
    let source = PluginSource::read(config, tenant, file).await?;
    let unchanged = previous
        .plugins
        .iter()
        .find(|p| p.path == file && p.source_key == source.key);
    if let Some(p) = unchanged {
        return Ok((p.clone(), false));
    }
    let limits = Limits::default()
        .overridden_by(&config.limits)
        .overridden_by(&tenant.limits)
        .overridden_by(&source.settings.limits);
    let share = config.instance_share(tenant);
    let plugin = load_plugin(sandbox, (&tenant.id, share), file, source, limits)
        .await
        .map_err(|e| e.to_string())?;
    Ok((Arc::new(plugin), true))
}

fn log_loaded(tenant: &str, plugin: &LoadedPlugin, (n, total): (usize, usize)) {
    use crate::telemetry::{keys, metrics};
    let attrs = [(keys::PLUGIN, &*plugin.name), (keys::OUTCOME, "loaded")];
    metrics::get().loads.add(1, &metrics::attrs(tenant, &attrs));
    tracing::info!(
        tenant, plugin = %plugin.name, sha256 = %&plugin.sha256[..12],
        tools = plugin.tools.len(), ms = plugin.load_time.as_millis() as u64,
        cached = plugin.code.from_cache(),
        "loaded plugin {n}/{total}"
    );
}

/// Record that `path` did not load, and keep serving its previous version if there is one.
fn keep_previous(
    catalog: &mut Catalog,
    previous: &Catalog,
    tenant: &str,
    path: PathBuf,
    error: String,
) {
    use crate::telemetry::{keys, metrics};
    let old = previous.plugins.iter().find(|p| p.path == path).cloned();
    let error = match &old {
        Some(old) => format!(
            "{error} (still serving the previous version, sha256 {})",
            &old.sha256[..12]
        ),
        None => error,
    };
    tracing::error!(tenant, path = %path.display(), "plugin not loaded: {error}");
    let attrs = [(keys::OUTCOME, "failed")];
    metrics::get().loads.add(1, &metrics::attrs(tenant, &attrs));
    catalog.failures.push(LoadFailure { path, error });
    if let Some(old) = old
        && let Err(e) = add_to_catalog(catalog, old)
    {
        tracing::error!(tenant, "the previous version cannot be kept either: {e}");
    }
}

/// A plugin's inputs: the component bytes, the settings that apply (its manifest, else the
/// tenant's `[tenant.plugin.<name>]`), and a key that changes when either changes.
struct PluginSource {
    name: String,
    bytes: Vec<u8>,
    sha256: String,
    settings: crate::config::PluginSettings,
    /// Where `settings` came from, for messages: the manifest, or the configuration file.
    settings_from: String,
    manifest: Option<PathBuf>,
    key: String,
}

impl PluginSource {
    async fn read(config: &Config, tenant: &TenantConfig, file: &Path) -> Result<Self, String> {
        let name = plugin_name(file);
        let bytes = tokio::fs::read(file)
            .await
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let manifest = manifest_path(file);
        let (settings, manifest_text, manifest) = match tokio::fs::read_to_string(&manifest).await {
            Ok(text) => (
                config
                    .parse_manifest(tenant, &manifest, &text)
                    .map_err(|e| e.to_string())?,
                text,
                Some(manifest),
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(near) = manifest_near_miss(file) {
                    // Refused rather than served without it: what it says (a tighter scope,
                    // fewer services) would silently not apply.
                    return Err(format!(
                        "{} is not this plugin's manifest, which must be named {} (after the \
                         component's file stem); did you mean that? Rename it",
                        near.display(),
                        manifest.display()
                    ));
                }
                (
                    tenant.plugin.get(&name).cloned().unwrap_or_default(),
                    String::new(),
                    None,
                )
            }
            Err(e) => return Err(format!("cannot read {}: {e}", manifest.display())),
        };
        let settings_from = match &manifest {
            Some(m) => m.display().to_string(),
            None => format!("{}: tenant.plugin.{name}", config.source.display()),
        };
        let key = format!(
            "{sha256}:{}",
            hex::encode(Sha256::digest(manifest_text.as_bytes()))
        );
        Ok(Self {
            name,
            bytes,
            sha256,
            settings,
            settings_from,
            manifest,
            key,
        })
    }
}

/// The `.wasm` files a tenant's `plugins` entries name, in a stable order.
fn expand_plugin_paths(
    config: &Config,
    tenant: &TenantConfig,
) -> Vec<Result<PathBuf, LoadFailure>> {
    let mut out = Vec::new();
    for entry in &tenant.plugins {
        let path = config.resolve_path(entry);
        if path.is_dir() {
            match std::fs::read_dir(&path) {
                Ok(dir) => {
                    let mut files: Vec<PathBuf> = dir
                        .filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|e| e == "wasm") && p.is_file())
                        .collect();
                    files.sort();
                    out.extend(files.into_iter().map(Ok));
                }
                Err(e) => out.push(Err(LoadFailure {
                    path: path.clone(),
                    error: format!("cannot list {}: {e}", path.display()),
                })),
            }
        } else {
            out.push(Ok(path));
        }
    }
    out
}

/// The plugin name for a file: its stem.
pub fn plugin_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".into())
}

/// Why a plugin was refused after it compiled.
#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    /// A tool name breaks the naming rule.
    #[error("tool name `{0}` must match [A-Za-z0-9_.-]{{1,128}}")]
    ToolName(String),
    /// A schema is not JSON Schema (input: an object schema) the host can compile.
    #[error("{what} of tool `{tool}` is not valid: {problem}")]
    Schema {
        /// The tool.
        tool: String,
        /// Which schema.
        what: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// The plugin's `tasks` export names a tool it does not list.
    #[error("the plugin runs `{0}` as a task but lists no such tool")]
    UnknownTaskTool(String),
    /// The plugin's `approvals` export declares a rule that cannot be enforced.
    #[error("the plugin's approval rule for `{tool}` is refused: {problem}")]
    Approval {
        /// The tool.
        tool: String,
        /// What is wrong.
        problem: String,
    },
    /// The plugin declares the same name twice.
    #[error("the plugin declares {kind} `{name}` more than once")]
    Duplicate {
        /// tool, prompt or resource.
        kind: &'static str,
        /// The repeated name.
        name: String,
    },
}

/// Compile, measure and describe one plugin, and apply its settings.
async fn load_plugin(
    sandbox: &Sandbox,
    (tenant, share): (&str, u32),
    path: &Path,
    source: PluginSource,
    limits: Limits,
) -> Result<LoadedPlugin, PluginLoadError> {
    let started = std::time::Instant::now();
    let PluginSource {
        name,
        bytes,
        sha256,
        settings,
        settings_from,
        manifest,
        key,
    } = source;
    let code = {
        let sandbox = sandbox.clone();
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || sandbox.compile(&path, &bytes)).await??
    };
    let units = fits(&code, share, path)?;
    let plugin_name: Arc<str> = Arc::from(name.as_str());
    let env = CallEnv {
        plugin: plugin_name.clone(),
        limits: limits.clone(),
        cancel: CancellationToken::new(),
        observer: Arc::new(Describing(plugin_name.clone())),
        egress: Arc::new(NoEgress),
        concurrency: Arc::new(Semaphore::new(1)),
        share: Share {
            permits: Arc::new(Semaphore::new(units as usize)),
            size: units,
        },
        labels: CallLabels {
            owner: Arc::from(tenant),
            version: Arc::from(&sha256[..12]),
            parent: tracing::Span::none(),
        },
    };
    let mut items = Items::describe(&code, &env, path).await?;
    items.apply(&settings, &settings_from)?;
    Ok(LoadedPlugin {
        name: plugin_name,
        path: path.to_path_buf(),
        sha256,
        source_key: key,
        manifest,
        code,
        concurrency: Arc::new(Semaphore::new(limits.max_concurrency)),
        limits,
        config: settings
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        claim_rules: settings.require_claims.clone(),
        approvals: items.approvals,
        services: settings.services.clone().into(),
        tools: items.tools,
        schemas: items.schemas,
        task_tools: items.task_tools,
        resources: items.resources,
        templates: items.templates,
        prompts: items.prompts,
        loaded_at: SystemTime::now(),
        load_time: started.elapsed(),
    })
}

/// The pool units one instance of `code` takes, if they fit in the tenant's `share`.
fn fits(code: &PluginCode, share: u32, path: &Path) -> Result<u32, PluginLoadError> {
    let f = code.footprint();
    let units = f.units();
    if units > share {
        return Err(PluginLoadError::Load(LoadError::TooLarge {
            path: path.display().to_string(),
            reason: format!(
                "one instance takes {units} units of the pool ({} core instances, {} memories, {} tables), \
                 more than this tenant's whole share of {share} (raise [tenant.quota] max_instances)",
                f.core_instances, f.memories, f.tables
            ),
        }));
    }
    Ok(units)
}

/// What a plugin serves, as it describes itself and as its settings adjust it.
struct Items {
    tools: Vec<wit::Tool>,
    schemas: std::collections::HashMap<String, schema::ToolSchemas>,
    task_tools: std::collections::HashMap<String, TaskMode>,
    /// Tools a person must approve call by call: the plugin's rules, then the operator's.
    approvals: BTreeMap<String, ApprovalRule>,
    resources: Vec<wit::Resource>,
    templates: Vec<wit::ResourceTemplate>,
    prompts: Vec<wit::Prompt>,
}

impl Items {
    /// Ask the plugin what it serves, and check its tools.
    async fn describe(
        code: &PluginCode,
        env: &CallEnv,
        path: &Path,
    ) -> Result<Self, PluginLoadError> {
        let describe = |source| LoadError::Describe {
            path: path.display().to_string(),
            source,
        };
        let tools = code.list_tools(env).await.map_err(describe)?;
        let (resources, templates) = code.list_resources(env).await.map_err(describe)?;
        let prompts = code.list_prompts(env).await.map_err(describe)?;
        let declared = code.task_tools(env).await.map_err(describe)?;
        let approval_rules = code.approval_rules(env).await.map_err(describe)?;
        let invalid = |source| PluginLoadError::Invalid {
            path: path.display().to_string(),
            source,
        };
        let schemas = validate_tools(&tools).map_err(invalid)?;
        let task_tools = task_modes(&tools, declared).map_err(invalid)?;
        let approvals = declared_approvals(&tools, approval_rules).map_err(invalid)?;
        Ok(Self {
            tools,
            schemas,
            task_tools,
            approvals,
            resources,
            templates,
            prompts,
        })
    }

    /// Apply the operator's settings: the enabled tools, and scope overrides by tool or
    /// prompt name, resource URI or URI template.
    fn apply(
        &mut self,
        settings: &crate::config::PluginSettings,
        settings_from: &str,
    ) -> Result<(), PluginLoadError> {
        if let Some(enabled) = &settings.tools {
            if let Some(unknown) = enabled
                .iter()
                .find(|t| !self.tools.iter().any(|x| &x.name == *t))
            {
                return Err(PluginLoadError::UnknownTool {
                    settings_from: settings_from.to_string(),
                    tool: unknown.clone(),
                });
            }
            self.tools.retain(|t| enabled.contains(&t.name));
            self.task_tools.retain(|name, _| enabled.contains(name));
            self.approvals.retain(|name, _| enabled.contains(name));
        }
        // The operator's approval rules replace the plugin's, tool by tool.
        for (tool, a) in &settings.approvals {
            let Some(listed) = self.tools.iter().find(|t| &t.name == tool) else {
                return Err(PluginLoadError::UnknownTool {
                    settings_from: settings_from.to_string(),
                    tool: tool.clone(),
                });
            };
            let rule = ApprovalRule {
                kind: a.kind.clone(),
                bind: a.bind.clone(),
                single_use: a.single_use,
                max_age_secs: a.max_age_secs,
            };
            rule.check(&input_schema(listed))
                .map_err(|problem| PluginLoadError::BadApproval {
                    settings_from: settings_from.to_string(),
                    tool: tool.clone(),
                    problem,
                })?;
            self.approvals.insert(tool.clone(), rule);
        }
        let names_an_item = |key: &String| {
            self.tools.iter().any(|t| &t.name == key)
                || self.prompts.iter().any(|p| &p.name == key)
                || self.resources.iter().any(|r| &r.uri == key)
                || self.templates.iter().any(|t| &t.uri_template == key)
        };
        if let Some(unknown) = settings.scopes.keys().find(|k| !names_an_item(k)) {
            return Err(PluginLoadError::UnknownItem {
                settings_from: settings_from.to_string(),
                item: unknown.clone(),
            });
        }
        let scopes_for = |key: &str, declared: &mut Vec<String>| {
            if let Some(scopes) = settings.scopes.get(key) {
                declared.clone_from(scopes);
            }
        };
        for tool in &mut self.tools {
            scopes_for(&tool.name, &mut tool.required_scopes);
        }
        for prompt in &mut self.prompts {
            scopes_for(&prompt.name, &mut prompt.required_scopes);
        }
        for resource in &mut self.resources {
            scopes_for(&resource.uri, &mut resource.required_scopes);
        }
        for template in &mut self.templates {
            scopes_for(&template.uri_template, &mut template.required_scopes);
        }
        Ok(())
    }
}

/// The `tasks` export's answer by tool name, each naming a listed tool once.
fn task_modes(
    tools: &[wit::Tool],
    declared: Vec<wit::TaskTool>,
) -> Result<std::collections::HashMap<String, TaskMode>, ValidationError> {
    let mut modes = std::collections::HashMap::new();
    for t in declared {
        if !tools.iter().any(|x| x.name == t.name) {
            return Err(ValidationError::UnknownTaskTool(t.name));
        }
        let mode = TaskMode {
            required: t.support == wit::TaskSupport::Required,
            input_first: t.input == wit::TaskInput::BeforeTask,
        };
        if modes.insert(t.name.clone(), mode).is_some() {
            return Err(ValidationError::Duplicate {
                kind: "task tool",
                name: t.name,
            });
        }
    }
    Ok(modes)
}

/// A tool's `inputSchema` as JSON (`null` if it is not: such a tool was refused already).
fn input_schema(tool: &wit::Tool) -> serde_json::Value {
    serde_json::from_str(&tool.input_schema).unwrap_or_default()
}

/// The `approvals` export's rules by tool name, each well formed and naming a listed tool once.
fn declared_approvals(
    tools: &[wit::Tool],
    declared: Vec<wit::ApprovalRule>,
) -> Result<BTreeMap<String, ApprovalRule>, ValidationError> {
    let mut rules = BTreeMap::new();
    for d in declared {
        let Some(tool) = tools.iter().find(|x| x.name == d.tool) else {
            return Err(ValidationError::Approval {
                tool: d.tool,
                problem: "the plugin lists no such tool".into(),
            });
        };
        let rule = ApprovalRule {
            kind: d.detail_type,
            bind: d.bind,
            single_use: d.single_use,
            max_age_secs: u64::from(d.max_age_secs),
        };
        if let Err(problem) = rule.check(&input_schema(tool)) {
            return Err(ValidationError::Approval {
                tool: d.tool,
                problem,
            });
        }
        if rules.insert(d.tool.clone(), rule).is_some() {
            return Err(ValidationError::Duplicate {
                kind: "approval rule for tool",
                name: d.tool,
            });
        }
    }
    Ok(rules)
}

/// Why loading one plugin failed.
#[derive(Debug, thiserror::Error)]
enum PluginLoadError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{path} was refused: {source}")]
    Invalid {
        path: String,
        source: ValidationError,
    },
    /// The settings enable a tool the plugin does not have.
    #[error("{settings_from}: tools: the plugin has no tool `{tool}`")]
    UnknownTool { settings_from: String, tool: String },
    /// The settings set scopes for an item the plugin does not have.
    #[error(
        "{settings_from}: scopes: the plugin has no tool, prompt, resource or template `{item}`"
    )]
    UnknownItem { settings_from: String, item: String },
    /// The settings' approval rule for a tool is malformed.
    #[error("{settings_from}: approvals.\"{tool}\": {problem}")]
    BadApproval {
        settings_from: String,
        tool: String,
        problem: String,
    },
    /// The compile task did not finish (it panicked or was cancelled).
    #[error("compile task failed: {0}")]
    CompileTask(#[from] tokio::task::JoinError),
}

/// Check tool names, and compile each tool's schemas.
pub fn validate_tools(
    tools: &[wit::Tool],
) -> Result<std::collections::HashMap<String, schema::ToolSchemas>, ValidationError> {
    let mut schemas = std::collections::HashMap::new();
    for tool in tools {
        let name_ok = (1..=128).contains(&tool.name.len())
            && tool
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !name_ok {
            return Err(ValidationError::ToolName(tool.name.clone()));
        }
        if schemas.contains_key(&tool.name) {
            return Err(ValidationError::Duplicate {
                kind: "tool",
                name: tool.name.clone(),
            });
        }
        schemas.insert(tool.name.clone(), schema::ToolSchemas::compile(tool)?);
    }
    Ok(schemas)
}

/// Add `plugin` to `catalog`, refusing it if a name it declares is already taken.
fn add_to_catalog(catalog: &mut Catalog, plugin: Arc<LoadedPlugin>) -> Result<(), String> {
    let clash = |kind: &str, name: &str, other: &LoadedPlugin| {
        format!(
            "{}: {kind} `{name}` is already provided by plugin `{}` ({}); rename it or remove one plugin",
            plugin.path.display(),
            other.name,
            other.path.display()
        )
    };
    for t in &plugin.tools {
        if let Some((other, _)) = catalog.tools.get(&t.name) {
            return Err(clash("tool", &t.name, other));
        }
    }
    for p in &plugin.prompts {
        if let Some((other, _)) = catalog.prompts.get(&p.name) {
            return Err(clash("prompt", &p.name, other));
        }
    }
    for r in &plugin.resources {
        if let Some((other, _)) = catalog.resources.get(&r.uri) {
            return Err(clash("resource", &r.uri, other));
        }
    }
    for (i, t) in plugin.tools.iter().enumerate() {
        catalog.tools.insert(t.name.clone(), (plugin.clone(), i));
    }
    for (i, p) in plugin.prompts.iter().enumerate() {
        catalog.prompts.insert(p.name.clone(), (plugin.clone(), i));
    }
    for (i, r) in plugin.resources.iter().enumerate() {
        catalog.resources.insert(r.uri.clone(), (plugin.clone(), i));
    }
    catalog.plugins.push(plugin);
    Ok(())
}

/// Observer used while a plugin describes itself at load time: output goes to the log only.
struct Describing(Arc<str>);

impl CallObserver for Describing {
    fn log(
        &self,
        level: wit::LogLevel,
        _logger: Option<String>,
        message: String,
    ) -> BoxFuture<'_, ()> {
        tracing::debug!(plugin = %self.0, ?level, "while loading: {message}");
        Box::pin(async {})
    }
    fn progress(&self, _: f64, _: Option<f64>, _: Option<String>) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    fn lists_changed(&self, _: wit::ListKinds) {}
    fn resource_updated(&self, _: String) {}
}

/// Load every tenant's plugins.
pub async fn load_all(sandbox: &Sandbox, config: &Config) -> BTreeMap<String, Arc<TenantPlugins>> {
    let mut out = BTreeMap::new();
    for tenant in &config.tenants {
        out.insert(
            tenant.id.clone(),
            Arc::new(load_tenant(sandbox, config, tenant).await),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::template_matches;

    #[test]
    fn level1_templates() {
        assert!(template_matches(
            "test://template/{id}/data",
            "test://template/123/data"
        ));
        assert!(!template_matches(
            "test://template/{id}/data",
            "test://template//data"
        ));
        assert!(!template_matches(
            "test://template/{id}/data",
            "test://template/1/2/data"
        ));
        assert!(!template_matches(
            "test://template/{id}/data",
            "test://template/123/data/x"
        ));
        assert!(template_matches("notes://{id}", "notes://abc"));
        assert!(!template_matches("notes://{id}", "other://abc"));
        assert!(template_matches("a://{x}-{y}", "a://1-2"));
    }
}
