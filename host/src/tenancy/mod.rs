//! Tenants: which tenant a request belongs to, and what each may consume.
//!
//! Owns the mapping of requests to tenants (path, optionally narrowed by the `Host` header)
//! and the per-tenant [`quota::Quotas`] (rate limits per tenant and per subject, requests in
//! progress, the tenant's share of the sandbox instance pool). Isolation itself is spread by
//! design: each tenant has its own resource URL (so tokens for one are refused by another),
//! its own issuers, session store, plugin catalog and services. This module must not
//! authenticate or speak MCP; the transport asks it where a request goes and whether to admit
//! it.

pub mod quota;

use crate::config::{Config, TenantConfig};

/// The tenants sharing one endpoint path, told apart by host.
#[derive(Debug, Clone)]
pub struct Mount {
    /// The path.
    pub path: String,
    /// (lower-cased hosts, tenant index); an empty host list answers any host.
    choices: Vec<(Vec<String>, usize)>,
}

impl Mount {
    /// The tenant (index into the configuration's tenants) serving `host` here.
    pub fn pick(&self, host: Option<&str>) -> Option<usize> {
        let host = host.map(str::to_ascii_lowercase);
        let bare = host.as_deref().map(strip_port);
        let named = self.choices.iter().find(|(hosts, _)| {
            hosts
                .iter()
                .any(|h| Some(h.as_str()) == host.as_deref() || Some(h.as_str()) == bare)
        });
        named
            .or_else(|| self.choices.iter().find(|(hosts, _)| hosts.is_empty()))
            .map(|(_, i)| *i)
    }

    /// Whether only one tenant is mounted here, for every host.
    pub fn single(&self) -> Option<usize> {
        match self.choices.as_slice() {
            [(hosts, i)] if hosts.is_empty() => Some(*i),
            _ => None,
        }
    }
}

/// `host` without a `:port` (IPv6 literals keep their brackets).
fn strip_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    }
}

/// Every endpoint path with the tenants mounted on it, in configuration order.
pub fn mounts(config: &Config) -> Vec<Mount> {
    let mut out: Vec<Mount> = Vec::new();
    for (i, t) in config.tenants.iter().enumerate() {
        let path = Config::tenant_path(t).to_string();
        let hosts = t.hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
        match out.iter_mut().find(|m| m.path == path) {
            Some(m) => m.choices.push((hosts, i)),
            None => out.push(Mount {
                path,
                choices: vec![(hosts, i)],
            }),
        }
    }
    out
}

/// The `Host` names every tenant answers for (for the DNS-rebinding allow-list).
pub fn tenant_hosts(tenants: &[TenantConfig]) -> impl Iterator<Item = &str> {
    tenants
        .iter()
        .flat_map(|t| t.hosts.iter().map(String::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_pick_tenants_sharing_a_path() {
        let m = Mount {
            path: "/mcp".into(),
            choices: vec![
                (vec!["a.example".into()], 0),
                (vec!["b.example:8443".into()], 1),
                (vec![], 2),
            ],
        };
        assert_eq!(m.pick(Some("a.example")), Some(0));
        assert_eq!(m.pick(Some("A.Example:9000")), Some(0));
        assert_eq!(m.pick(Some("b.example:8443")), Some(1));
        assert_eq!(m.pick(Some("b.example")), Some(2));
        assert_eq!(m.pick(None), Some(2));
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        let only_named = Mount {
            path: "/mcp".into(),
            choices: vec![(vec!["a.example".into()], 0)],
        };
        assert_eq!(only_named.pick(Some("c.example")), None);
        assert_eq!(only_named.single(), None);
    }
}
