//! `Config::validate`: each section's checks, and those spanning sections (tenant issuers
//! exist, instance shares fit the pool, credentials have an exchange client, one
//! introspector per opaque token).

use super::checks::{check_quota, is_endpoint_path, is_slug, plain_http_url};
use super::*;

impl Config {
    /// Every check, section by section; the first problem found is the error.
    pub(super) fn validate(&mut self) -> Result<(), ConfigError> {
        if self.tenants.is_empty() {
            return Err(self.error("tenant", "at least one [[tenant]] is required"));
        }
        self.check_server()?;
        self.check_cluster()?;
        self.check_tasks()?;
        self.check_telemetry()?;
        self.check_audit()?;
        if let Some(x) = &self.exchange {
            self.check_exchange("exchange", x)?;
        }
        self.validate_auth()?;
        self.route_tenants()?;
        for i in 0..self.tenants.len() {
            self.check_tenant(i)?;
        }
        self.check_limits()?;
        self.check_instance_shares()?;
        if let Some(t) = &self.stdio.tenant
            && !self.tenants.iter().any(|x| &x.id == t)
        {
            return Err(self.error("stdio.tenant", format!("no tenant with id `{t}`")));
        }
        Ok(())
    }

    /// `[cluster]`: what replicas must share, and what cannot be shared.
    fn check_cluster(&self) -> Result<(), ConfigError> {
        let Some(c) = &self.cluster else {
            return Ok(());
        };
        if self.dev_as.enabled {
            return Err(self.error(
                "dev_as.enabled",
                "the development authorization server keeps its keys, clients and codes in one \
                 process, so replicas would not accept each other's tokens; use a real \
                 authorization server with [cluster]",
            ));
        }
        if self.server.state_key_env.is_none() {
            return Err(self.error(
                "server.state_key_env",
                "required with [cluster]: every replica must seal and open requestState with \
                 the same key (a random per-process key would make another replica refuse it)",
            ));
        }
        let prefix_ok = !c.key_prefix.is_empty()
            && c.key_prefix.len() <= 64
            && c.key_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !prefix_ok {
            return Err(self.error(
                "cluster.key_prefix",
                format!(
                    "`{}` must be 1-64 letters, digits, `-`, `_` or `.`",
                    c.key_prefix
                ),
            ));
        }
        if let Some(url) = &c.advertise_url
            && plain_http_url(url).is_none_or(|u| u.path() != "/")
        {
            return Err(self.error(
                "cluster.advertise_url",
                format!("`{url}` must be a base URL like http://10.1.2.3:8080 (no path)"),
            ));
        }
        if c.replica_ttl_ms < 1000 {
            return Err(self.error("cluster.replica_ttl_ms", "must be at least 1000"));
        }
        if !(10..=60_000).contains(&c.redis_timeout_ms) {
            return Err(self.error("cluster.redis_timeout_ms", "must be between 10 and 60000"));
        }
        Ok(())
    }

    /// `[tasks]`: bounds that keep every task finite.
    fn check_tasks(&self) -> Result<(), ConfigError> {
        let t = &self.tasks;
        if !(1000..=7 * 24 * 3_600_000).contains(&t.ttl_ms) {
            return Err(self.error(
                "tasks.ttl_ms",
                "must be between 1000 and 604800000 (7 days)",
            ));
        }
        if t.deadline_ms == 0 || t.deadline_ms > t.ttl_ms {
            return Err(self.error(
                "tasks.deadline_ms",
                "must be at least 1 and at most tasks.ttl_ms (a task cannot outlive its TTL)",
            ));
        }
        if t.max_per_subject == 0 || t.max_per_tenant < t.max_per_subject {
            return Err(self.error(
                "tasks.max_per_subject",
                "must be at least 1 and at most tasks.max_per_tenant",
            ));
        }
        if !(10..=60_000).contains(&t.poll_interval_ms) {
            return Err(self.error("tasks.poll_interval_ms", "must be between 10 and 60000"));
        }
        if t.inline_ms > 60_000 {
            return Err(self.error("tasks.inline_ms", "must be at most 60000"));
        }
        Ok(())
    }

    /// `[server]` and the sandbox pool size.
    fn check_server(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.server.public_url
            && plain_http_url(url).is_none()
        {
            return Err(self.error(
                "server.public_url",
                format!("`{url}` must be an http(s) URL like https://mcp.example.com"),
            ));
        }
        for (i, o) in self.server.cors_origins.iter().enumerate() {
            let origin_only = plain_http_url(o)
                .is_some_and(|u| u.path() == "/" && !o.ends_with('/') && u.query().is_none());
            if !origin_only {
                return Err(self.error(
                    format!("server.cors_origins[{i}]"),
                    format!("`{o}` must be an origin like https://app.example.com (no path)"),
                ));
            }
        }
        let at_least_one = [
            ("server.max_sessions", self.server.max_sessions),
            (
                "server.max_sessions_per_subject",
                self.server.max_sessions_per_subject,
            ),
            ("sandbox.max_instances", self.sandbox.max_instances as usize),
            ("server.max_connections", self.server.max_connections),
            (
                "server.max_connections_per_client",
                self.server.max_connections_per_client,
            ),
            (
                "server.http2_max_concurrent_streams",
                self.server.http2_max_concurrent_streams as usize,
            ),
            (
                "server.header_read_timeout_ms",
                self.server.header_read_timeout_ms as usize,
            ),
            (
                "server.body_read_timeout_ms",
                self.server.body_read_timeout_ms as usize,
            ),
            (
                "server.idle_timeout_ms",
                self.server.idle_timeout_ms as usize,
            ),
            (
                "server.write_timeout_ms",
                self.server.write_timeout_ms as usize,
            ),
        ];
        if let Some((key, _)) = at_least_one.iter().find(|(_, n)| *n == 0) {
            return Err(self.error(*key, "must be at least 1"));
        }
        if self.server.max_body_bytes < 1024 {
            return Err(self.error("server.max_body_bytes", "must be at least 1024"));
        }
        if self.dev_as.enabled
            && !self.server.listen.ip().is_loopback()
            && !self.dev_as.allow_public
        {
            return Err(self.error(
                "dev_as.enabled",
                format!(
                    "the development authorization server issues tokens to anyone who asks; it is \
                     refused on the non-loopback address {} (bind to 127.0.0.1, or set \
                     dev_as.allow_public = true for a throwaway test host)",
                    self.server.listen
                ),
            ));
        }
        for (i, idp) in self.dev_as.enterprise_idps.iter().enumerate() {
            if plain_http_url(&idp.issuer).is_none() {
                return Err(self.error(
                    format!("dev_as.enterprise_idps[{i}].issuer"),
                    format!("`{}` must be an http(s) URL", idp.issuer),
                ));
            }
            if !self.resolve_path(&idp.jwks_file).is_file() {
                return Err(self.error(
                    format!("dev_as.enterprise_idps[{i}].jwks_file"),
                    format!("{} is not a file", idp.jwks_file.display()),
                ));
            }
        }
        if self.auth.mode == AuthMode::None
            && !self.server.listen.ip().is_loopback()
            && !self.server.allow_unauthenticated_public
        {
            return Err(self.error(
                "auth.mode",
                format!(
                    "\"none\" on the non-loopback address {} would let anyone call every tool; \
                     configure OAuth, bind to 127.0.0.1, or set server.allow_unauthenticated_public = true",
                    self.server.listen
                ),
            ));
        }
        Ok(())
    }

    /// `[telemetry]`.
    fn check_telemetry(&self) -> Result<(), ConfigError> {
        let t = &self.telemetry;
        if let Some(p) = &t.protocol
            && !matches!(p.as_str(), "http/protobuf" | "http/json")
        {
            return Err(self.error(
                "telemetry.protocol",
                format!("`{p}` is not supported; use \"http/protobuf\" (OTLP/HTTP, port 4318 on collectors, Jaeger and Tempo) or \"http/json\""),
            ));
        }
        if t.sample_ratio.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
            return Err(self.error("telemetry.sample_ratio", "must be between 0.0 and 1.0"));
        }
        if let Some(e) = &t.endpoint
            && plain_http_url(e).is_none()
        {
            return Err(self.error(
                "telemetry.endpoint",
                format!("`{e}` must be an http(s) URL such as http://127.0.0.1:4318"),
            ));
        }
        Ok(())
    }

    /// `[audit]`: its OTLP sink needs somewhere to export to; its sizes must make sense.
    fn check_audit(&self) -> Result<(), ConfigError> {
        let a = &self.audit;
        let exported_elsewhere = [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|e| !e.trim().is_empty()));
        if a.otlp
            && (self.telemetry.enabled == Some(false)
                || (self.telemetry.endpoint.is_none() && !exported_elsewhere))
        {
            return Err(self.error(
                "audit.otlp",
                "the audit record is exported through [telemetry]'s OTLP exporter, which exports nowhere: set telemetry.endpoint (or OTEL_EXPORTER_OTLP_ENDPOINT), or turn otlp off",
            ));
        }
        if a.max_argument_bytes == 0 || a.max_argument_bytes > 1024 * 1024 {
            return Err(self.error(
                "audit.max_argument_bytes",
                "must be between 1 and 1048576 bytes",
            ));
        }
        Ok(())
    }

    /// Tenant ids, endpoint paths (defaults filled in), hosts and resource URLs: every
    /// request must reach exactly one tenant, and every token be valid at one at most.
    fn route_tenants(&mut self) -> Result<(), ConfigError> {
        let mut ids = std::collections::HashSet::new();
        let mut paths = std::collections::HashSet::new();
        let mut resources = std::collections::HashSet::new();
        for i in 0..self.tenants.len() {
            let t = &self.tenants[i];
            if !is_slug(&t.id) {
                return Err(self.error(
                    format!("tenant[{i}].id"),
                    format!("`{}` must match [a-z0-9-]{{1,64}}", t.id),
                ));
            }
            if !ids.insert(t.id.clone()) {
                return Err(self.error(
                    format!("tenant[{i}].id"),
                    format!("`{}` is used by another tenant", t.id),
                ));
            }
            let path = t.path.clone().unwrap_or_else(|| {
                if i == 0 {
                    "/mcp".into()
                } else {
                    format!("/t/{}/mcp", t.id)
                }
            });
            if !is_endpoint_path(&path) {
                return Err(self.error(
                    format!("tenant[{i}].path"),
                    format!("`{path}` must be an absolute path like /mcp (no trailing slash, not under /.well-known)"),
                ));
            }
            for (j, h) in t.hosts.iter().enumerate() {
                let ok = !h.is_empty()
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
                if !ok {
                    return Err(self.error(
                        format!("tenant[{i}].hosts[{j}]"),
                        format!("`{h}` must be a host name, optionally with :port"),
                    ));
                }
            }
            let hosts: Vec<String> = if t.hosts.is_empty() {
                vec!["*".into()]
            } else {
                t.hosts.iter().map(|h| h.to_ascii_lowercase()).collect()
            };
            for h in hosts {
                if !paths.insert((path.clone(), h.clone())) {
                    let whom = if h == "*" {
                        "another tenant without hosts".to_string()
                    } else {
                        format!("another tenant for host {h}")
                    };
                    return Err(self.error(
                        format!("tenant[{i}].path"),
                        format!("`{path}` is used by {whom}"),
                    ));
                }
            }
            self.tenants[i].path = Some(path);
            if let Some(r) = &self.tenants[i].resource
                && plain_http_url(r).is_none()
            {
                return Err(self.error(
                    format!("tenant[{i}].resource"),
                    format!("`{r}` must be an http(s) URL without query or fragment"),
                ));
            }
            let resource = self.tenant_resource(&self.tenants[i]);
            if !resources.insert(resource.clone()) {
                return Err(self.error(
                    format!("tenant[{i}].resource"),
                    format!("`{resource}` is another tenant's resource URL too; a token for one would be accepted by both"),
                ));
            }
        }
        Ok(())
    }

    /// One tenant's issuers, quota, plugins, services and plugin settings.
    fn check_tenant(&self, i: usize) -> Result<(), ConfigError> {
        let tenant = &self.tenants[i];
        let trusted = self.trusted_issuers();
        for (j, iss) in tenant.issuers.iter().enumerate() {
            let known = trusted.iter().any(|t| &t.issuer == iss) || *iss == self.dev_as_issuer();
            if !known {
                return Err(self.error(
                    format!("tenant[{i}].issuers[{j}]"),
                    format!("`{iss}` is not an [[auth.issuer]]"),
                ));
            }
        }
        self.check_audiences(i)?;
        check_quota(&tenant.quota)
            .map_err(|(k, problem)| self.error(format!("tenant[{i}].quota.{k}"), problem))?;
        if let Some(j) = tenant.plugins.iter().position(|p| p.as_os_str().is_empty()) {
            return Err(self.error(format!("tenant[{i}].plugins[{j}]"), "empty path"));
        }
        for (j, svc) in tenant.services.iter().enumerate() {
            self.check_service(tenant, svc).map_err(|(k, problem)| {
                self.error(format!("tenant[{i}].service[{j}].{k}"), problem)
            })?;
        }
        for (name, settings) in &tenant.plugin {
            self.check_plugin_settings(tenant, settings)
                .map_err(|(k, problem)| {
                    self.error(format!("tenant[{i}].plugin.{name}.{k}"), problem)
                })?;
        }
        Ok(())
    }

    /// `[[tenant]] audiences`: per issuer this tenant trusts, audiences that are this tenant's
    /// alone — no other tenant's resource URL, no audience another tenant lists for the
    /// same issuer (a token for one tenant would be accepted by the other).
    fn check_audiences(&self, i: usize) -> Result<(), ConfigError> {
        let tenant = &self.tenants[i];
        let trusted = self.tenant_issuers(tenant);
        for (issuer, audiences) in &tenant.audiences {
            let at = format!("tenant[{i}].audiences.\"{issuer}\"");
            if !trusted.contains(issuer) {
                return Err(self.error(
                    at,
                    format!("`{issuer}` is not an issuer this tenant trusts"),
                ));
            }
            for aud in audiences {
                if aud.trim().is_empty() {
                    return Err(self.error(at, "an empty audience"));
                }
                let theirs = self.tenants.iter().enumerate().find(|(j, other)| {
                    *j != i
                        && (self.tenant_resource(other) == *aud
                            || other.audiences.get(issuer).is_some_and(|a| a.contains(aud)))
                });
                if let Some((_, other)) = theirs {
                    return Err(self.error(
                        at,
                        format!("`{aud}` is tenant `{}`'s audience too; a token for one would be accepted by both", other.id),
                    ));
                }
            }
        }
        Ok(())
    }

    /// One `[[tenant.service]]`; the error is (key, problem).
    fn check_service(
        &self,
        tenant: &TenantConfig,
        svc: &ServiceConfig,
    ) -> Result<(), (&'static str, String)> {
        if !is_slug(&svc.name) {
            return Err((
                "name",
                format!("`{}` must match [a-z0-9-]{{1,64}}", svc.name),
            ));
        }
        if plain_http_url(&svc.base_url).is_none() {
            return Err((
                "base_url",
                format!(
                    "`{}` must be an http(s) URL without query, fragment or credentials",
                    svc.base_url
                ),
            ));
        }
        self.check_service_credential(tenant, svc)?;
        if svc.credential == CredentialMode::Static && svc.header_env.is_none() {
            return Err((
                "header_env",
                "credential = \"static\" needs header_env".into(),
            ));
        }
        Ok(())
    }

    /// `[limits]` and every `[tenant.limits]`.
    fn check_limits(&self) -> Result<(), ConfigError> {
        let limits = std::iter::once(("limits".to_string(), &self.limits)).chain(
            self.tenants
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("tenant[{i}].limits"), &t.limits)),
        );
        for (key, l) in limits {
            self.check_limits_section(l)
                .map_err(|(k, problem)| self.error(format!("{key}.{k}"), problem))?;
        }
        Ok(())
    }

    /// One set of per-call limits; the error is (key, problem).
    fn check_limits_section(&self, l: &LimitsSection) -> Result<(), (&'static str, String)> {
        if l.deadline_ms == Some(0) {
            return Err(("deadline_ms", "must be greater than 0".into()));
        }
        if l.memory_mb
            .is_some_and(|mb| mb == 0 || mb > self.sandbox.max_memory_mb)
        {
            return Err((
                "memory_mb",
                format!(
                    "must be between 1 and sandbox.max_memory_mb ({})",
                    self.sandbox.max_memory_mb
                ),
            ));
        }
        if l.max_concurrency == Some(0) {
            return Err(("max_concurrency", "must be at least 1".into()));
        }
        Ok(())
    }

    /// The tenants' instance shares must fit in the pool.
    fn check_instance_shares(&self) -> Result<(), ConfigError> {
        let explicit: u64 = self
            .tenants
            .iter()
            .filter_map(|t| t.quota.max_instances)
            .map(u64::from)
            .sum();
        if explicit > u64::from(self.sandbox.max_instances) {
            return Err(self.error(
                "tenant.quota.max_instances",
                format!(
                    "the tenants' shares add up to {explicit}, more than sandbox.max_instances ({})",
                    self.sandbox.max_instances
                ),
            ));
        }
        if self.tenants.iter().any(|t| t.quota.max_instances.is_none())
            && self.instance_share_default() == 0
        {
            return Err(self.error(
                "tenant.quota.max_instances",
                format!(
                    "the explicit shares leave no instances of sandbox.max_instances ({}) for the tenants without one",
                    self.sandbox.max_instances
                ),
            ));
        }
        Ok(())
    }

    /// Check a gateway OAuth client section (`at` names it in errors).
    fn check_exchange(&self, at: &str, x: &ExchangeConfig) -> Result<(), ConfigError> {
        let missing = match x.auth_method {
            ClientAuthMethod::ClientSecretBasic if x.client_secret_env.is_none() => {
                Some(("client_secret_env", "client_secret_basic"))
            }
            ClientAuthMethod::ClientSecretPost if x.client_secret_env.is_none() => {
                Some(("client_secret_env", "client_secret_post"))
            }
            ClientAuthMethod::PrivateKeyJwt if x.private_key_file.is_none() => {
                Some(("private_key_file", "private_key_jwt"))
            }
            _ => None,
        };
        if let Some((key, method)) = missing {
            return Err(self.error(
                format!("{at}.{key}"),
                format!("auth_method = \"{method}\" needs it"),
            ));
        }
        if !matches!(x.private_key_alg.as_str(), "RS256" | "PS256" | "ES256") {
            return Err(self.error(
                format!("{at}.private_key_alg"),
                format!("`{}` is not RS256, PS256 or ES256", x.private_key_alg),
            ));
        }
        Ok(())
    }

    /// Check that a service's tokens can be obtained at an issuer the tenant trusts; the
    /// error is (key, problem).
    fn check_service_credential(
        &self,
        tenant: &TenantConfig,
        svc: &ServiceConfig,
    ) -> Result<(), (&'static str, String)> {
        match (&svc.provider, svc.credential) {
            (None, CredentialMode::UserConsent) => {
                return Err((
                    "provider",
                    "\"user-consent\" needs the service's OAuth provider ([tenant.service.provider])".into(),
                ));
            }
            (Some(_), CredentialMode::UserConsent) => return self.check_provider(svc),
            (Some(_), _) => {
                return Err((
                    "provider",
                    "a provider is used only with credential = \"user-consent\"".into(),
                ));
            }
            (None, _) => {}
        }
        if !svc.credential.uses_authorization_server() {
            return Ok(());
        }
        let mode = svc.credential.name();
        if svc.credential == CredentialMode::OnBehalfOf {
            if svc.scopes.is_empty() {
                return Err((
                    "scopes",
                    "\"on-behalf-of\" names the downstream API by its scopes (`api://<app>/.default`): list them".into(),
                ));
            }
        } else if svc.audience.is_none() {
            return Err((
                "audience",
                format!("\"{mode}\" needs the audience tokens are for"),
            ));
        }
        let trusted = self.tenant_issuers(tenant);
        if let Some(iss) = &svc.issuer
            && !trusted.contains(iss)
        {
            return Err((
                "issuer",
                format!("`{iss}` is not an issuer this tenant trusts"),
            ));
        }
        let clients: Vec<String> = self
            .exchange_clients()
            .into_iter()
            .map(|(i, _, _)| i)
            .collect();
        match svc.credential {
            c if c.acts_for_caller() => {
                let can = trusted
                    .iter()
                    .filter(|i| svc.issuer.as_ref().is_none_or(|s| s == *i))
                    .any(|i| clients.contains(i));
                if !can {
                    return Err((
                        "credential",
                        format!(
                            "no issuer this tenant trusts can obtain its tokens with \"{mode}\" (a caller's token is presented only at its own issuer): \
                             give {} an [auth.issuer.exchange] client, or an [exchange] section",
                            svc.issuer.clone().unwrap_or_else(|| trusted.join(" or "))
                        ),
                    ));
                }
            }
            _ => {
                let at = svc
                    .issuer
                    .clone()
                    .or_else(|| self.default_exchange_issuer());
                if !at.is_some_and(|i| clients.contains(&i)) {
                    return Err((
                        "credential",
                        "\"client-credentials\" needs an [exchange] section (or an [auth.issuer.exchange] client at the service's `issuer`) with the gateway's client credentials".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// A user-consent service's provider: where its endpoints come from, and the vault the
    /// grants go to.
    fn check_provider(&self, svc: &ServiceConfig) -> Result<(), (&'static str, String)> {
        let p = svc.provider.as_ref().expect("checked by the caller");
        let endpoints = p.authorization_endpoint.is_some() && p.token_endpoint.is_some();
        if p.issuer.is_none() && !endpoints {
            return Err((
                "provider",
                "give the provider's issuer (its metadata is discovered), or both authorization_endpoint and token_endpoint".into(),
            ));
        }
        for url in [&p.issuer, &p.authorization_endpoint, &p.token_endpoint]
            .into_iter()
            .flatten()
        {
            if plain_http_url(url).is_none() {
                return Err(("provider", format!("`{url}` is not an http(s) URL")));
            }
        }
        if self.vault.is_none() {
            return Err((
                "credential",
                "\"user-consent\" keeps each user's grant sealed in the vault: add a [vault] section".into(),
            ));
        }
        if self.auth.mode != crate::config::AuthMode::Oauth {
            return Err((
                "credential",
                "\"user-consent\" keeps grants per user: it needs auth.mode = \"oauth\"".into(),
            ));
        }
        Ok(())
    }

    /// Check one plugin's settings (from `[tenant.plugin.<name>]` or a manifest) against the
    /// tenant and the sandbox; the error is (key, problem).
    pub(super) fn check_plugin_settings(
        &self,
        tenant: &TenantConfig,
        settings: &PluginSettings,
    ) -> Result<(), (&'static str, String)> {
        if let Some(s) = settings
            .services
            .iter()
            .find(|s| !tenant.services.iter().any(|x| &x.name == *s))
        {
            return Err(("services", format!("no [[tenant.service]] named `{s}`")));
        }
        self.check_limits_section(&settings.limits)
    }

    /// `[auth]` with OAuth on: issuers, their clients, one issuer per token, limits, claims.
    fn validate_auth(&self) -> Result<(), ConfigError> {
        let a = &self.auth;
        if a.mode != AuthMode::Oauth {
            return Ok(());
        }
        if a.issuers.is_empty() && !self.dev_as.enabled {
            return Err(self.error(
                "auth.issuer",
                "mode = \"oauth\" needs at least one [[auth.issuer]]",
            ));
        }
        for (i, iss) in a.issuers.iter().enumerate() {
            self.check_issuer(i, iss)?;
        }
        self.check_exchange_clients()?;
        self.check_one_introspector_per_token()?;
        if a.introspection_cache_secs > 300 {
            return Err(self.error(
                "auth.introspection_cache_secs",
                "at most 300: a revoked token keeps working for this long",
            ));
        }
        if a.introspection_failures_per_minute == 0 {
            return Err(self.error(
                "auth.introspection_failures_per_minute",
                "must be at least 1",
            ));
        }
        if a.scopes_supported.iter().any(|s| s == "offline_access") {
            return Err(self.error(
                "auth.scopes_supported",
                "must not list offline_access (MCP resource servers do not advertise it)",
            ));
        }
        for (i, t) in self.tenants.iter().enumerate() {
            for (plugin, settings) in &t.plugin {
                for (tool, rules) in &settings.require_claims {
                    if let Some(claim) = rules.keys().find(|c| !a.claims.contains(c)) {
                        return Err(self.error(
                            format!("tenant[{i}].plugin.{plugin}.require_claims.{tool}"),
                            format!("claim `{claim}` must also be listed in auth.claims so the gateway keeps it"),
                        ));
                    }
                }
            }
        }
        if a.max_token_bytes < 256 {
            return Err(self.error("auth.max_token_bytes", "must be at least 256"));
        }
        self.check_dpop()
    }

    /// `[auth.dpop]`: asymmetric proof algorithms, and windows and a replay cache that can work.
    fn check_dpop(&self) -> Result<(), ConfigError> {
        let d = &self.auth.dpop;
        if d.algorithms.is_empty() {
            return Err(self.error("auth.dpop.algorithms", "must name at least one algorithm"));
        }
        if let Some(alg) = d
            .algorithms
            .iter()
            .find(|alg| !ACCEPTED_ALGORITHMS.contains(&alg.as_str()))
        {
            return Err(self.error(
                "auth.dpop.algorithms",
                format!(
                    "`{alg}` is not accepted for proofs; use asymmetric algorithms: {}",
                    ACCEPTED_ALGORITHMS.join(", ")
                ),
            ));
        }
        for (key, value, max) in [
            ("auth.dpop.max_age_secs", d.max_age_secs, 3600),
            (
                "auth.dpop.nonce_lifetime_secs",
                d.nonce_lifetime_secs,
                86_400,
            ),
        ] {
            if value == 0 || value > max {
                return Err(self.error(key, format!("must be between 1 and {max} seconds")));
            }
        }
        if d.replay_cache_entries == 0 {
            return Err(self.error(
                "auth.dpop.replay_cache_entries",
                "must be at least 1: every proof is remembered until its window has passed",
            ));
        }
        if d.nonce && self.cluster.is_some() && self.server.state_key_env.is_none() {
            return Err(self.error(
                "auth.dpop.nonce",
                "with [cluster], nonces need server.state_key_env so every replica accepts them",
            ));
        }
        Ok(())
    }

    /// One `[[auth.issuer]]`: its URL, algorithms and exchange client.
    fn check_issuer(&self, i: usize, iss: &IssuerConfig) -> Result<(), ConfigError> {
        if plain_http_url(&iss.issuer).is_none() {
            return Err(self.error(
                format!("auth.issuer[{i}].issuer"),
                format!("`{}` must be an http(s) URL", iss.issuer),
            ));
        }
        if let Some(alg) = iss
            .algorithms
            .iter()
            .find(|alg| !ACCEPTED_ALGORITHMS.contains(&alg.as_str()))
        {
            return Err(self.error(
                format!("auth.issuer[{i}].algorithms"),
                format!(
                    "`{alg}` is not accepted; use asymmetric algorithms: {}",
                    ACCEPTED_ALGORITHMS.join(", ")
                ),
            ));
        }
        // Claims that name a token, a client or a time, not a user: every caller would share
        // one subject (their sessions, grants and quotas).
        const NOT_A_USER: &[&str] = &[
            "iss",
            "aud",
            "exp",
            "nbf",
            "iat",
            "jti",
            "scope",
            "scp",
            "client_id",
            "azp",
            "tid",
            "ver",
            "cnf",
            "act",
        ];
        if iss.subject_claim.trim().is_empty() || NOT_A_USER.contains(&iss.subject_claim.as_str()) {
            return Err(self.error(
                format!("auth.issuer[{i}].subject_claim"),
                format!(
                    "`{}` does not name a user; use `sub` (the default) or a claim unique per user at this issuer, such as Entra ID's `oid`",
                    iss.subject_claim
                ),
            ));
        }
        if let Some(x) = &iss.exchange {
            self.check_exchange(&format!("auth.issuer[{i}].exchange"), x)?;
            if x.issuer.is_some() {
                return Err(self.error(
                    format!("auth.issuer[{i}].exchange.issuer"),
                    "is implied by the enclosing [[auth.issuer]]; remove it",
                ));
            }
        }
        Ok(())
    }

    /// At most one gateway client per issuer. `[exchange]` may name an authorization server
    /// the gateway does not trust for inbound tokens (its own tokens for client-credentials
    /// services come from there); it exchanges only tokens that server issued.
    fn check_exchange_clients(&self) -> Result<(), ConfigError> {
        let Some(issuer) = self.default_exchange_issuer() else {
            return Ok(());
        };
        let both = self
            .auth
            .issuers
            .iter()
            .position(|t| t.issuer == issuer && t.exchange.is_some());
        if let Some(j) = both {
            return Err(self.error(
                format!("auth.issuer[{j}].exchange"),
                format!("`{issuer}` has a client in [exchange] already; keep one"),
            ));
        }
        Ok(())
    }

    /// An opaque token must have exactly one issuer to be introspected at: within a tenant,
    /// at most one introspecting issuer without a `token_prefix`, and no prefix empty or the
    /// beginning of another.
    fn check_one_introspector_per_token(&self) -> Result<(), ConfigError> {
        for (t, tenant) in self.tenants.iter().enumerate() {
            let trusted = self.tenant_issuers(tenant);
            let prefixes: Vec<Option<&str>> = self
                .auth
                .issuers
                .iter()
                .filter(|i| trusted.contains(&i.issuer))
                .filter_map(|i| i.introspection.as_ref())
                .map(|x| x.token_prefix.as_deref())
                .collect();
            let unprefixed = prefixes.iter().filter(|p| p.is_none()).count();
            let named: Vec<&str> = prefixes.iter().flatten().copied().collect();
            // Distinct is not enough: with `a_` and `a_b`, a token `a_b…` of the first
            // issuer would be sent to the second. None may be empty or begin another.
            let overlapping = named.iter().enumerate().any(|(i, p)| {
                p.is_empty()
                    || named
                        .iter()
                        .enumerate()
                        .any(|(j, q)| i != j && q.starts_with(p))
            });
            if unprefixed > 1 || overlapping {
                return Err(self.error(
                    format!("tenant[{t}].issuers"),
                    "more than one trusted issuer introspects opaque tokens without a distinct \
                     introspection.token_prefix (none empty, none the beginning of another); an \
                     opaque token must have exactly one issuer to ask",
                ));
            }
        }
        Ok(())
    }
}
