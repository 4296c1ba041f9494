//! The plugin inventory operators see: each plugin's version, tools with their scopes and
//! approval rules, grants, load facts and last error, and the files that serve nothing. Built from a catalog snapshot;
//! the registry itself renders nothing.

use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;

use crate::plugins::{ApprovalRule, Catalog};

/// One tenant's plugins, as `GET /admin/plugins` and `portcullis plugins` show them.
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    /// The loaded plugins, in load order.
    pub plugins: Vec<PluginEntry>,
    /// Files that failed to load and serve no previous version.
    pub failed: Vec<FailedFile>,
}

/// One loaded plugin.
#[derive(Debug, Clone, Serialize)]
pub struct PluginEntry {
    /// The plugin's name (its file stem).
    pub name: String,
    /// Where it was loaded from.
    pub path: String,
    /// SHA-256 of the component, hex.
    pub sha256: String,
    /// The manifest its settings came from, if any.
    pub manifest: Option<String>,
    /// The Cedar policies it suggests, if it ships them (`[tenant.policy] suggested`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suggested_policies: Option<String>,
    /// Its tools with the scopes they need.
    pub tools: Vec<ToolEntry>,
    /// How many prompts it serves.
    pub prompts: usize,
    /// How many resources and resource templates it serves.
    pub resources: usize,
    /// The downstream services it was granted.
    pub services: Vec<String>,
    /// When it was loaded (Unix seconds).
    pub loaded_at_unix: u64,
    /// How long compiling and describing took.
    pub load_ms: u64,
    /// Whether its compiled code came from the artifact cache.
    pub from_cache: bool,
    /// The last error loading its file, while the previous version keeps serving.
    pub last_error: Option<String>,
}

/// A tool, its required scopes and the approval each call needs, if any.
#[derive(Debug, Clone, Serialize)]
pub struct ToolEntry {
    /// The tool name.
    pub name: String,
    /// Scopes a caller needs.
    pub scopes: Vec<String>,
    /// The approval of each call it needs (RFC 9396 `type`, bound arguments, single use,
    /// maximum age), as the plugin or the operator declared it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalRule>,
}

/// A file that failed to load.
#[derive(Debug, Clone, Serialize)]
pub struct FailedFile {
    /// The file.
    pub path: String,
    /// Why, naming the file.
    pub error: String,
}

impl Inventory {
    /// The inventory of `catalog`.
    pub fn of(catalog: &Catalog) -> Self {
        let error_for = |path: &Path| {
            catalog
                .failures
                .iter()
                .find(|f| f.path == path)
                .map(|f| f.error.clone())
        };
        let unix = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        };
        let plugins = catalog
            .plugins
            .iter()
            .map(|p| PluginEntry {
                name: p.name.to_string(),
                path: p.path.display().to_string(),
                sha256: p.sha256.clone(),
                manifest: p.manifest.as_ref().map(|m| m.display().to_string()),
                suggested_policies: p.suggested_policies().map(|f| f.display().to_string()),
                tools: p
                    .tools
                    .iter()
                    .map(|t| ToolEntry {
                        name: t.name.clone(),
                        scopes: t.required_scopes.clone(),
                        approval: p.approvals.get(&t.name).cloned(),
                    })
                    .collect(),
                prompts: p.prompts.len(),
                resources: p.resources.len() + p.templates.len(),
                services: p.services.to_vec(),
                loaded_at_unix: unix(p.loaded_at),
                load_ms: p.load_time.as_millis() as u64,
                from_cache: p.code.from_cache(),
                last_error: error_for(&p.path),
            })
            .collect();
        let failed = catalog
            .failures
            .iter()
            .filter(|f| !catalog.plugins.iter().any(|p| p.path == f.path))
            .map(|f| FailedFile {
                path: f.path.display().to_string(),
                error: f.error.clone(),
            })
            .collect();
        Self { plugins, failed }
    }
}
