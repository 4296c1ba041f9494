//! The validators every section shares: slugs, endpoint paths, plain http(s) URLs, quotas,
//! secrets from the environment.

use super::QuotaConfig;

/// Why a secret named by an `*_env` key could not be read. Names the variable, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvSecretError {
    #[error("environment variable {0} is not set")]
    NotSet(String),
    #[error("environment variable {0} is empty")]
    Empty(String),
    #[error("environment variable {0} is not valid UTF-8")]
    NotUnicode(String),
}

/// Read a secret named by an `*_env` key from the environment: the one way every section
/// reads one.
pub fn secret_from_env(var: &str) -> Result<String, EnvSecretError> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(v),
        Ok(_) => Err(EnvSecretError::Empty(var.into())),
        Err(std::env::VarError::NotPresent) => Err(EnvSecretError::NotSet(var.into())),
        Err(std::env::VarError::NotUnicode(_)) => Err(EnvSecretError::NotUnicode(var.into())),
    }
}

/// Whether `path` can be a tenant's endpoint: absolute, no trailing slash, not under
/// `/.well-known`, plain characters.
pub(super) fn is_endpoint_path(path: &str) -> bool {
    path.starts_with('/')
        && path.len() > 1
        && !path.ends_with('/')
        && !path.starts_with("/.well-known")
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b))
}

/// Whether `s` matches `[a-z0-9-]{1,64}` (tenant ids, service names).
pub(super) fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `s` as an http(s) URL with a host and without query, fragment or credentials: what every
/// URL in the file must be (public URL, resources, issuers, services, the OTLP endpoint).
pub(super) fn plain_http_url(s: &str) -> Option<reqwest::Url> {
    reqwest::Url::parse(s).ok().filter(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.host().is_some()
            && u.query().is_none()
            && u.fragment().is_none()
            && u.username().is_empty()
            && u.password().is_none()
    })
}

/// One `[tenant.quota]`; the error is (key, problem).
pub(super) fn check_quota(q: &QuotaConfig) -> Result<(), (&'static str, String)> {
    let zero = [
        ("requests_per_minute", q.requests_per_minute),
        ("burst", q.burst),
        ("subject_requests_per_minute", q.subject_requests_per_minute),
        ("subject_burst", q.subject_burst),
        (
            "max_concurrent_requests",
            q.max_concurrent_requests.map(|n| u32::from(n != 0)),
        ),
        ("max_instances", q.max_instances),
    ]
    .into_iter()
    .find(|(_, v)| *v == Some(0));
    if let Some((key, _)) = zero {
        return Err((key, "must be at least 1".into()));
    }
    if q.burst.is_some() && q.requests_per_minute.is_none() {
        return Err(("burst", "needs requests_per_minute".into()));
    }
    if q.subject_burst.is_some() && q.subject_requests_per_minute.is_none() {
        return Err(("subject_burst", "needs subject_requests_per_minute".into()));
    }
    Ok(())
}
