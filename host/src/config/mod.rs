//! The configuration file: one TOML document, parsed and validated before anything serves.
//!
//! Owns the schema (every key, its default and its meaning) and the checks that need only the
//! file itself. Every error names the file, the key and the problem. Secrets never appear
//! inline: keys ending in `_env` name an environment variable to read them from. This module
//! must not open sockets or load plugins; the caller does that with the validated [`Config`].
//!
//! Each section's types live in a file named for it (`server`, `auth`, `dev_as`, `sandbox`,
//! `telemetry`, `tenant`, `cluster`, `tasks`); `checks` holds the validators they share; `validate` runs every
//! section's checks and the cross-section ones. This module is a leaf: it imports no other
//! module of the host, and each module resolves its own runtime settings from its section.

mod audit;
mod auth;
mod checks;
mod cluster;
mod dev_as;
mod sandbox;
mod server;
mod tasks;
mod telemetry;
mod tenant;
mod validate;
mod vault;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use audit::*;
pub use auth::*;
pub use checks::{EnvSecretError, secret_from_env};
pub use cluster::*;
pub use dev_as::*;
use sandbox::default_cache_dir;
pub use sandbox::*;
pub use server::*;
pub use tasks::*;
pub use telemetry::*;
pub use tenant::*;
pub use vault::*;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP listener and transport settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// How callers are authenticated.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Engine-wide sandbox settings.
    #[serde(default)]
    pub sandbox: SandboxSection,
    /// Limits applied to every plugin unless its tenant overrides them.
    #[serde(default)]
    pub limits: LimitsSection,
    /// Identity for `portcullis stdio` (there is no token on stdio).
    #[serde(default)]
    pub stdio: StdioConfig,
    /// The embedded development authorization server (off unless enabled).
    #[serde(default)]
    pub dev_as: DevAsConfig,
    /// Token exchange for downstream services with `credential = "token-exchange"`.
    pub exchange: Option<ExchangeConfig>,
    /// Log format and OpenTelemetry export.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Replicas sharing state on Redis (absent: one process, nothing shared).
    pub cluster: Option<ClusterConfig>,
    /// Tool calls that run as MCP Tasks.
    #[serde(default)]
    pub tasks: TasksConfig,
    /// Users' grants at third-party providers (`credential = "user-consent"`), sealed.
    pub vault: Option<VaultConfig>,
    /// The record of every decision.
    #[serde(default)]
    pub audit: AuditConfig,
    /// The tenants; a single-tenant deployment has exactly one.
    #[serde(rename = "tenant", default)]
    pub tenants: Vec<TenantConfig>,
    /// The directory the file was read from; relative paths resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The file this configuration came from, for messages.
    #[serde(skip)]
    pub source: PathBuf,
}

/// A configuration problem: which file, which key, what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {problem}")]
pub struct ConfigError {
    /// The configuration file.
    pub file: String,
    /// The key, as a TOML path (e.g. `tenant[0].path`).
    pub key: String,
    /// What is wrong and how to fix it.
    pub problem: String,
}

impl Config {
    /// The configuration `portcullis dev` serves: this one with the development AS on and
    /// OAuth required, validated again as it will be served (a file with authentication off
    /// gets every OAuth check).
    pub fn for_dev(mut self) -> Result<Self, ConfigError> {
        self.dev_as.enabled = true;
        self.auth.mode = AuthMode::Oauth;
        self.validate()?;
        Ok(self)
    }

    /// Read and validate `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            key: "(file)".into(),
            problem: format!("cannot read the file: {e}"),
        })?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse(&text, path, &base_dir)
    }

    /// Parse and validate `text` as if read from `source`.
    pub fn parse(text: &str, source: &Path, base_dir: &Path) -> Result<Self, ConfigError> {
        let file = source.display().to_string();
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let key = e
                .span()
                .map(|s| locate(text, s.start))
                .unwrap_or_else(|| "(document)".into());
            ConfigError {
                file: file.clone(),
                key,
                problem: e.message().to_string(),
            }
        })?;
        config.base_dir = base_dir.to_path_buf();
        config.source = source.to_path_buf();
        config.validate()?;
        Ok(config)
    }

    fn error(&self, key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.source.display().to_string(),
            key: key.into(),
            problem: problem.into(),
        }
    }

    /// The issuers `tenant` accepts tokens from: its `issuers`, else every trusted issuer.
    pub fn tenant_issuers(&self, tenant: &TenantConfig) -> Vec<String> {
        if tenant.issuers.is_empty() {
            self.trusted_issuers()
                .into_iter()
                .map(|i| i.issuer)
                .collect()
        } else {
            tenant.issuers.clone()
        }
    }

    /// The issuer of the `[exchange]` client: its `issuer`, else the first trusted issuer.
    pub fn default_exchange_issuer(&self) -> Option<String> {
        let x = self.exchange.as_ref()?;
        x.issuer
            .clone()
            .or_else(|| self.trusted_issuers().first().map(|i| i.issuer.clone()))
    }

    /// The gateway's OAuth clients, one per issuer: every `[auth.issuer.exchange]` and
    /// `[exchange]` for its issuer, each as (issuer, the section's key for messages, section).
    pub fn exchange_clients(&self) -> Vec<(String, String, &ExchangeConfig)> {
        let mut out: Vec<(String, String, &ExchangeConfig)> = self
            .auth
            .issuers
            .iter()
            .enumerate()
            .filter_map(|(i, iss)| {
                let x = iss.exchange.as_ref()?;
                Some((iss.issuer.clone(), format!("auth.issuer[{i}].exchange"), x))
            })
            .collect();
        if let (Some(x), Some(issuer)) = (&self.exchange, self.default_exchange_issuer()) {
            out.push((issuer, "exchange".into(), x));
        }
        out
    }

    /// Parse and check an operator manifest (`<plugin>.toml` beside `<plugin>.wasm`): the
    /// same keys as `[tenant.plugin.<name>]`, which it replaces for that plugin.
    pub fn parse_manifest(
        &self,
        tenant: &TenantConfig,
        path: &Path,
        text: &str,
    ) -> Result<PluginSettings, ConfigError> {
        let error = |key: String, problem: String| ConfigError {
            file: path.display().to_string(),
            key,
            problem,
        };
        let settings: PluginSettings = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
            error(
                line.map_or_else(|| "manifest".into(), |l| format!("line {l}")),
                e.message().to_string(),
            )
        })?;
        self.check_plugin_settings(tenant, &settings)
            .map_err(|(k, problem)| error(k.into(), problem))?;
        Ok(settings)
    }

    /// The development authorization server's issuer URL.
    pub fn dev_as_issuer(&self) -> String {
        format!("{}/dev-as", self.public_url())
    }

    /// The issuers tokens are accepted from: `[[auth.issuer]]`, or the development
    /// authorization server when it is enabled and none are listed.
    pub fn trusted_issuers(&self) -> Vec<IssuerConfig> {
        if self.auth.issuers.is_empty() && self.dev_as.enabled {
            vec![IssuerConfig {
                issuer: self.dev_as_issuer(),
                algorithms: vec!["ES256".into()],
                jwks_uri: None,
                introspection: None,
                exchange: None,
                subject_claim: "sub".into(),
                max_token_lifetime_secs: None,
            }]
        } else {
            self.auth.issuers.clone()
        }
    }

    /// The instances a tenant without an explicit `quota.max_instances` may run: an even
    /// share of what the explicit shares leave of the pool.
    fn instance_share_default(&self) -> u32 {
        let explicit: u32 = self
            .tenants
            .iter()
            .filter_map(|t| t.quota.max_instances)
            .sum();
        let without = self
            .tenants
            .iter()
            .filter(|t| t.quota.max_instances.is_none())
            .count()
            .max(1) as u32;
        self.sandbox.max_instances.saturating_sub(explicit) / without
    }

    /// The plugin instances `tenant` may run at once.
    pub fn instance_share(&self, tenant: &TenantConfig) -> u32 {
        tenant
            .quota
            .max_instances
            .unwrap_or_else(|| self.instance_share_default())
    }

    /// The tenant's MCP endpoint path.
    pub fn tenant_path(tenant: &TenantConfig) -> &str {
        tenant.path.as_deref().unwrap_or("/mcp")
    }

    /// The tenant's resource URL: its token audience and the subject of its metadata.
    pub fn tenant_resource(&self, tenant: &TenantConfig) -> String {
        if let Some(r) = &tenant.resource {
            return r.trim_end_matches('/').to_string();
        }
        let path = Self::tenant_path(tenant);
        match tenant.hosts.first() {
            Some(host) => {
                let public = self.public_url();
                let scheme = public.split("://").next().unwrap_or("http");
                format!("{scheme}://{host}{path}")
            }
            None => format!("{}{path}", self.public_url()),
        }
    }

    /// Where compiled plugins are cached: `sandbox.cache_dir` resolved against the file's
    /// directory, the default cache directory when unset, `None` when set to `""`.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        match &self.sandbox.cache_dir {
            Some(p) if p.as_os_str().is_empty() => None,
            Some(p) => Some(self.resolve_path(p)),
            None => default_cache_dir(),
        }
    }

    /// The URL clients use to reach this gateway, without a trailing slash.
    pub fn public_url(&self) -> String {
        match &self.server.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("http://{}", self.server.listen),
        }
    }

    /// Resolve a path from the file against the file's directory.
    pub fn resolve_path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }
}

/// Describe a byte offset in TOML text as "line L, column C".
fn locate(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, str::len) + 1;
    format!("line {line}, column {column}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"), Path::new("."))
    }

    #[test]
    fn minimal_single_tenant() {
        let c = parse("[[tenant]]\nid = \"default\"\nplugins = [\"a.wasm\"]\n").unwrap();
        assert_eq!(c.tenants[0].path.as_deref(), Some("/mcp"));
        assert_eq!(c.public_url(), "http://127.0.0.1:8080");
    }

    #[test]
    fn unknown_key_names_the_file_and_line() {
        let e = parse("[server]\nlisen = \"127.0.0.1:1\"\n[[tenant]]\nid=\"a\"\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("test.toml: line 2"), "{msg}");
        assert!(msg.contains("lisen"), "{msg}");
    }

    #[test]
    fn an_audit_record_that_cannot_be_kept_is_refused() {
        let tenant = "[[tenant]]\nid = \"a\"\n";
        let e = parse(&format!(
            "[telemetry]\nenabled = false\n[audit]\notlp = true\n{tenant}"
        ))
        .unwrap_err();
        assert_eq!(e.key, "audit.otlp");
        assert!(e.to_string().contains("exports nowhere"), "{e}");
        parse(&format!(
            "[telemetry]\nendpoint = \"http://127.0.0.1:4318\"\n[audit]\notlp = true\n{tenant}"
        ))
        .unwrap();
        let e = parse(&format!("[audit]\nmax_argument_bytes = 0\n{tenant}")).unwrap_err();
        assert_eq!(e.key, "audit.max_argument_bytes");
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = parse("[[tenant]]\nid = \"Bad Id\"\n").unwrap_err();
        assert_eq!(e.key, "tenant[0].id");
        let e = parse("[[tenant]]\nid = \"a\"\npath = \"mcp/\"\n").unwrap_err();
        assert_eq!(e.key, "tenant[0].path");
        let e = parse("[[tenant]]\nid = \"a\"\n[tenant.limits]\ndeadline_ms = 0\n").unwrap_err();
        assert_eq!(e.key, "tenant[0].limits.deadline_ms");
        let e = parse("").unwrap_err();
        assert_eq!(e.key, "tenant");
    }

    #[test]
    fn dpop_settings_that_cannot_work_are_refused() {
        let base = "[auth]\nmode = \"oauth\"\n[dev_as]\nenabled = true\n";
        let tenant = "[[tenant]]\nid = \"a\"\n";
        let key = |x: &str| {
            parse(&format!("{base}{x}\n{tenant}"))
                .map(|_| ())
                .map_err(|e| e.key)
        };
        assert_eq!(
            key("[auth.dpop]\nalgorithms = [\"HS256\"]"),
            Err("auth.dpop.algorithms".into())
        );
        assert_eq!(
            key("[auth.dpop]\nalgorithms = []"),
            Err("auth.dpop.algorithms".into())
        );
        assert_eq!(
            key("[auth.dpop]\nmax_age_secs = 0"),
            Err("auth.dpop.max_age_secs".into())
        );
        assert_eq!(
            key("[auth.dpop]\nreplay_cache_entries = 0"),
            Err("auth.dpop.replay_cache_entries".into())
        );
        assert_eq!(
            key("[auth.dpop]\nalgorithms = [\"EdDSA\"]\nnonce = true"),
            Ok(())
        );
        let bad_mode = parse(&format!("{base}{tenant}dpop = \"sometimes\"\n")).unwrap_err();
        assert!(
            bad_mode
                .to_string()
                .contains("expected one of `off`, `allowed`, `required`"),
            "{bad_mode}"
        );
        assert_eq!(
            key(
                "[[dev_as.enterprise_idps]]\nissuer = \"https://idp.example\"\njwks_file = \"nowhere.json\""
            ),
            Err("dev_as.enterprise_idps[0].jwks_file".into())
        );
    }

    #[test]
    fn cluster_mode_refuses_what_replicas_cannot_share() {
        let tenant = "[[tenant]]\nid = \"a\"\n";
        let key = |x: &str| parse(&format!("{x}\n{tenant}")).map_err(|e| (e.key, e.problem));
        let (k, why) = key("[cluster]").unwrap_err();
        assert_eq!(k, "server.state_key_env", "{why}");
        let keyed = "[server]\nstate_key_env = \"K\"\n";
        let (k, why) = key(&format!("{keyed}[dev_as]\nenabled = true\n[cluster]")).unwrap_err();
        assert_eq!(k, "dev_as.enabled");
        assert!(why.contains("real authorization server"), "{why}");
        let (k, _) = key(&format!("{keyed}[cluster]\nkey_prefix = \"a b\"")).unwrap_err();
        assert_eq!(k, "cluster.key_prefix");
        let (k, _) = key(&format!(
            "{keyed}[cluster]\nadvertise_url = \"http://10.0.0.1/mcp\""
        ))
        .unwrap_err();
        assert_eq!(k, "cluster.advertise_url");
        let (k, _) = key(&format!("{keyed}[cluster]\nreplica_ttl_ms = 10")).unwrap_err();
        assert_eq!(k, "cluster.replica_ttl_ms");
        let (k, _) = key(&format!(
            "{keyed}[cluster]\nquotas_without_redis = \"maybe\""
        ))
        .unwrap_err();
        assert!(k.starts_with("line"), "{k}");
        let c = parse(&format!("{keyed}[cluster]\n{tenant}")).unwrap();
        let cluster = c.cluster.unwrap();
        assert_eq!(cluster.redis_url_env, "PORTCULLIS_REDIS_URL");
        assert_eq!(cluster.quotas_without_redis, QuotasWithoutRedis::Local);
    }

    #[test]
    fn gateway_client_settings_are_checked() {
        let tenant = "[[tenant]]\nid = \"a\"\n";
        let key = |x: &str| parse(&format!("[exchange]\n{x}\n{tenant}")).map_err(|e| e.key);
        assert_eq!(
            key("client_id = \"g\"").unwrap_err(),
            "exchange.client_secret_env"
        );
        assert_eq!(
            key("client_id = \"g\"\nauth_method = \"private_key_jwt\"").unwrap_err(),
            "exchange.private_key_file"
        );
        assert_eq!(
            key("client_id = \"g\"\nauth_method = \"private_key_jwt\"\nprivate_key_file = \"k.pem\"\nprivate_key_alg = \"HS256\"")
                .unwrap_err(),
            "exchange.private_key_alg"
        );
        assert!(key("client_id = \"g\"\nclient_secret_env = \"S\"").is_ok());
        let service = |mode: &str| {
            parse(&format!(
                "{tenant}[[tenant.service]]\nname = \"s\"\nbase_url = \"https://api.example\"\ncredential = \"{mode}\"\n"
            ))
            .map_err(|e| e.key)
        };
        assert_eq!(
            service("client-credentials").unwrap_err(),
            "tenant[0].service[0].audience",
            "needs an audience"
        );
        let with_audience = |mode: &str| {
            parse(&format!(
                "{tenant}[[tenant.service]]\nname = \"s\"\nbase_url = \"https://api.example\"\ncredential = \"{mode}\"\naudience = \"https://api.example\"\n"
            ))
            .map_err(|e| e.key)
        };
        assert_eq!(
            with_audience("client-credentials").unwrap_err(),
            "tenant[0].service[0].credential",
            "and an [exchange] client"
        );
        assert!(service("none").is_ok());
    }

    #[test]
    fn every_token_has_one_issuer_to_go_to() {
        let key = |text: &str| parse(text).map(|_| ()).map_err(|e| e.key);
        let oauth = "[auth]\nmode = \"oauth\"\n";
        let intro = |iss: &str, prefix: &str| {
            format!(
                "[[auth.issuer]]\nissuer = \"{iss}\"\nintrospection = {{ client_id = \"g\", client_secret_env = \"S\"{prefix} }}\n"
            )
        };
        let tenant = "[[tenant]]\nid = \"t\"\n";
        // Two introspecting issuers need distinct prefixes: an opaque token has one issuer.
        let both = format!(
            "{oauth}{}{}{tenant}",
            intro("https://x", ""),
            intro("https://y", "")
        );
        assert_eq!(key(&both).unwrap_err(), "tenant[0].issuers");
        let same = format!(
            "{oauth}{}{}{tenant}",
            intro("https://x", ", token_prefix = \"a_\""),
            intro("https://y", ", token_prefix = \"a_\"")
        );
        assert_eq!(key(&same).unwrap_err(), "tenant[0].issuers");
        for (x, y) in [("a_", "a_b"), ("", "y_")] {
            let overlapping = format!(
                "{oauth}{}{}{tenant}",
                intro("https://x", &format!(", token_prefix = \"{x}\"")),
                intro("https://y", &format!(", token_prefix = \"{y}\""))
            );
            assert_eq!(
                key(&overlapping).unwrap_err(),
                "tenant[0].issuers",
                "`{x}` and `{y}`: a token of one would be introspected at the other"
            );
        }
        let prefixed = format!(
            "{oauth}{}{}{tenant}",
            intro("https://x", ""),
            intro("https://y", ", token_prefix = \"y_\"")
        );
        assert!(key(&prefixed).is_ok());
        // A tenant trusting only one of them has no ambiguity.
        let scoped = both.replace(
            tenant,
            "[[tenant]]\nid = \"t\"\nissuers = [\"https://x\"]\n",
        );
        assert!(key(&scoped).is_ok());

        // Exchange clients: one per issuer; the per-issuer table implies its issuer.
        let x = "[[auth.issuer]]\nissuer = \"https://x\"\n";
        let with_client = "[[auth.issuer]]\nissuer = \"https://x\"\nexchange = { client_id = \"g\", client_secret_env = \"S\", issuer = \"https://y\" }\n";
        assert_eq!(
            key(&format!("{oauth}{with_client}{tenant}")).unwrap_err(),
            "auth.issuer[0].exchange.issuer"
        );
        let service = |extra: &str| {
            format!(
                "{tenant}[[tenant.service]]\nname = \"s\"\nbase_url = \"https://api\"\ncredential = \"token-exchange\"\naudience = \"https://api\"\n{extra}"
            )
        };
        let exchange = "[exchange]\nclient_id = \"g\"\nclient_secret_env = \"S\"\n";
        assert!(key(&format!("{oauth}{x}{exchange}{}", service(""))).is_ok());
        assert_eq!(
            key(&format!("{oauth}{x}{}", service(""))).unwrap_err(),
            "tenant[0].service[0].credential",
            "no exchange client at the only trusted issuer"
        );
        assert_eq!(
            key(&format!(
                "{oauth}{x}{exchange}{}",
                service("issuer = \"https://elsewhere\"\n")
            ))
            .unwrap_err(),
            "tenant[0].service[0].issuer",
            "a service bound to an issuer the tenant does not trust"
        );
    }

    #[test]
    fn unauthenticated_public_bind_is_refused_unless_forced() {
        let text = "[server]\nlisten = \"0.0.0.0:8080\"\n[[tenant]]\nid = \"a\"\n";
        assert_eq!(parse(text).unwrap_err().key, "auth.mode");
        let forced = text.replace(
            "[server]\n",
            "[server]\nallow_unauthenticated_public = true\n",
        );
        assert!(parse(&forced).is_ok());
    }

    #[test]
    fn oauth_settings_are_checked() {
        let base = "[auth]\nmode = \"oauth\"\n";
        let tenant = "[[tenant]]\nid = \"a\"\n";
        assert_eq!(
            parse(&format!("{base}{tenant}")).unwrap_err().key,
            "auth.issuer"
        );
        let issuer = "[[auth.issuer]]\nissuer = \"https://as.example\"\n";
        assert!(parse(&format!("{base}{issuer}{tenant}")).is_ok());
        let hs = "[[auth.issuer]]\nissuer = \"https://as.example\"\nalgorithms = [\"HS256\"]\n";
        assert_eq!(
            parse(&format!("{base}{hs}{tenant}")).unwrap_err().key,
            "auth.issuer[0].algorithms"
        );
        // A claim that names a client or the audience would make every caller one user.
        for claim in ["azp", "aud", ""] {
            let by = format!("{issuer}subject_claim = \"{claim}\"\n");
            assert_eq!(
                parse(&format!("{base}{by}{tenant}")).unwrap_err().key,
                "auth.issuer[0].subject_claim"
            );
        }
        assert!(parse(&format!("{base}{issuer}subject_claim = \"oid\"\n{tenant}")).is_ok());
        let offline = format!("{base}scopes_supported = [\"offline_access\"]\n{issuer}{tenant}");
        assert_eq!(parse(&offline).unwrap_err().key, "auth.scopes_supported");
        let rule = format!(
            "{base}{issuer}{tenant}[tenant.plugin.p]\nrequire_claims = {{ t = {{ groups = \"admin\" }} }}\n"
        );
        assert_eq!(
            parse(&rule).unwrap_err().key,
            "tenant[0].plugin.p.require_claims.t"
        );
        let listed = rule.replace(
            "mode = \"oauth\"\n",
            "mode = \"oauth\"\nclaims = [\"groups\"]\n",
        );
        assert!(parse(&listed).is_ok());
    }

    #[test]
    fn tenants_get_distinct_default_paths() {
        let c = parse("[[tenant]]\nid = \"a\"\n[[tenant]]\nid = \"b\"\n").unwrap();
        assert_eq!(c.tenants[1].path.as_deref(), Some("/t/b/mcp"));
        assert!(parse("[[tenant]]\nid = \"a\"\n[[tenant]]\nid = \"a\"\n").is_err());
    }

    /// #29: an audience a tenant accepts besides its resource URL is that tenant's alone.
    #[test]
    fn a_tenants_extra_audiences_are_its_own() {
        let err = |text: &str| parse(text).unwrap_err().to_string();
        let auth = "[auth]\nmode = \"oauth\"\n[[auth.issuer]]\nissuer = \"https://login.example/t/v2.0\"\n\
                    [[auth.issuer]]\nissuer = \"https://other.example\"\n";
        let ok = parse(&format!(
            "{auth}[[tenant]]\nid = \"a\"\naudiences = {{ \"https://login.example/t/v2.0\" = [\"guid-a\"] }}\n\
             [[tenant]]\nid = \"b\"\naudiences = {{ \"https://login.example/t/v2.0\" = [\"guid-b\"] }}\n"
        ))
        .unwrap();
        assert_eq!(ok.tenants[0].audiences.len(), 1);
        // The same GUID for two tenants: a token for one would open the other.
        let both = err(&format!(
            "{auth}[[tenant]]\nid = \"a\"\naudiences = {{ \"https://login.example/t/v2.0\" = [\"guid\"] }}\n\
             [[tenant]]\nid = \"b\"\naudiences = {{ \"https://login.example/t/v2.0\" = [\"guid\"] }}\n"
        ));
        assert!(both.contains("tenant `b`'s audience too"), "{both}");
        // Another tenant's resource URL as an extra audience.
        let theirs = err(&format!(
            "{auth}[[tenant]]\nid = \"a\"\nresource = \"https://gw.example/mcp\"\n\
             [[tenant]]\nid = \"b\"\naudiences = {{ \"https://other.example\" = [\"https://gw.example/mcp\"] }}\n"
        ));
        assert!(theirs.contains("tenant `a`'s audience too"), "{theirs}");
        // Only for an issuer the tenant trusts.
        let untrusted = err(&format!(
            "{auth}[[tenant]]\nid = \"a\"\nissuers = [\"https://other.example\"]\n\
             audiences = {{ \"https://login.example/t/v2.0\" = [\"guid\"] }}\n"
        ));
        assert!(
            untrusted.contains("not an issuer this tenant trusts"),
            "{untrusted}"
        );
    }

    /// #29: what each downstream strategy needs, named at load.
    #[test]
    fn on_behalf_of_needs_scopes_and_every_grant_a_client_at_the_issuer() {
        let err = |text: &str| parse(text).unwrap_err().to_string();
        let base = "[auth]\nmode = \"oauth\"\n[[auth.issuer]]\nissuer = \"https://as.example\"\n";
        let client = "[auth.issuer.exchange]\nclient_id = \"gw\"\nauth_method = \"client_secret_post\"\nclient_secret_env = \"S\"\n";
        let svc = |extra: &str| {
            format!(
                "[[tenant]]\nid = \"a\"\n[[tenant.service]]\nname = \"api\"\nbase_url = \"https://api.example\"\n{extra}\n"
            )
        };
        let obo = err(&format!(
            "{base}{client}{}",
            svc("credential = \"on-behalf-of\"")
        ));
        assert!(
            obo.contains("service[0].scopes") && obo.contains("api://<app>/.default"),
            "{obo}"
        );
        parse(&format!(
            "{base}{client}{}",
            svc("credential = \"on-behalf-of\"\nscopes = [\"api://x/.default\"]")
        ))
        .unwrap();
        let bearer = err(&format!(
            "{base}{client}{}",
            svc("credential = \"jwt-bearer\"")
        ));
        assert!(
            bearer.contains("\"jwt-bearer\" needs the audience"),
            "{bearer}"
        );
        let no_client = err(&format!(
            "{base}{}",
            svc("credential = \"jwt-bearer\"\naudience = \"https://api.example\"")
        ));
        assert!(no_client.contains("with \"jwt-bearer\""), "{no_client}");
        let no_secret = err(&format!(
            "{base}[auth.issuer.exchange]\nclient_id = \"gw\"\nauth_method = \"client_secret_post\"\n{}",
            svc("")
        ));
        assert!(no_secret.contains("client_secret_post"), "{no_secret}");
    }

    #[test]
    fn tenant_routing_resources_issuers_and_quotas_are_checked() {
        let err = |text: &str| parse(text).unwrap_err().to_string();
        // Two tenants on one path need different hosts.
        assert!(
            err(
                "[[tenant]]\nid = \"a\"\npath = \"/mcp\"\n[[tenant]]\nid = \"b\"\npath = \"/mcp\"\n"
            )
            .contains("tenant[1].path")
        );
        let c = parse(
            "[server]\npublic_url = \"https://gw.example\"\n\
             [[tenant]]\nid = \"a\"\npath = \"/mcp\"\nhosts = [\"a.example\"]\n\
             [[tenant]]\nid = \"b\"\npath = \"/mcp\"\nhosts = [\"b.example:8443\"]\n",
        )
        .unwrap();
        assert_eq!(c.tenant_resource(&c.tenants[0]), "https://a.example/mcp");
        assert_eq!(
            c.tenant_resource(&c.tenants[1]),
            "https://b.example:8443/mcp"
        );
        // One resource URL for two tenants would let one tenant's tokens work at the other.
        assert!(
            err(
                "[[tenant]]\nid = \"a\"\nresource = \"https://x.example/mcp\"\n\
                     [[tenant]]\nid = \"b\"\nresource = \"https://x.example/mcp\"\n"
            )
            .contains("another tenant's resource URL")
        );
        assert!(
            err("[[tenant]]\nid = \"a\"\nissuers = [\"https://unknown.example\"]\n")
                .contains("tenant[0].issuers[0]")
        );
        assert!(
            err("[[tenant]]\nid = \"a\"\n[tenant.quota]\nsubject_burst = 3\n")
                .contains("needs subject_requests_per_minute")
        );
        assert!(
            err("[[tenant]]\nid = \"a\"\n[tenant.quota]\nrequests_per_minute = 0\n")
                .contains("tenant[0].quota.requests_per_minute")
        );
        // Instance shares must fit in the pool; unset shares split what is left.
        assert!(err("[sandbox]\nmax_instances = 10\n[[tenant]]\nid = \"a\"\n[tenant.quota]\nmax_instances = 8\n\
                     [[tenant]]\nid = \"b\"\n[tenant.quota]\nmax_instances = 4\n")
            .contains("add up to 12"));
        let c = parse(
            "[sandbox]\nmax_instances = 10\n[[tenant]]\nid = \"a\"\n[tenant.quota]\nmax_instances = 4\n\
             [[tenant]]\nid = \"b\"\n[[tenant]]\nid = \"c\"\n",
        )
        .unwrap();
        let shares: Vec<u32> = c.tenants.iter().map(|t| c.instance_share(t)).collect();
        assert_eq!(shares, [4, 3, 3]);
        let telemetry = |kv: &str| err(&format!("[telemetry]\n{kv}\n[[tenant]]\nid = \"a\"\n"));
        assert!(telemetry("log_format = \"xml\"").contains("unknown variant `xml`"));
        assert!(telemetry("protocol = \"grpc\"").contains("telemetry.protocol"));
        assert!(telemetry("sample_ratio = 1.5").contains("telemetry.sample_ratio"));
        assert!(telemetry("endpoint = \"collector:4318\"").contains("telemetry.endpoint"));
    }
}
