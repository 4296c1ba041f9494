//! OAuth vocabulary and discovery shared by the resource server, the gateway's OAuth client
//! and the development authorization server.
//!
//! Owns: the RFC 8693 / RFC 7523 URNs, bounded fetching of JSON documents from authorization
//! servers (`fetch_json`) and RFC 8414 / OIDC metadata discovery with exact issuer matching
//! (`discover`), with typed errors; which scopes are offered (`auth.scopes_supported` and
//! those the plugins declare, `offered_scopes`); reading DPoP proofs (`proof`); what an approval of one call is and
//! whether a token's RFC 9396 details carry it (`approval`). Must not:
//! validate tokens (`auth`) or request them (`downstream`).

pub mod approval;
pub(crate) mod proof;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// Where the scopes the plugins currently declare come from (their catalogs; they change on
/// reload).
pub type DeclaredScopes = Arc<dyn Fn() -> BTreeSet<String> + Send + Sync>;

/// The scopes offered: `configured` in order, then every other scope `declared` returns.
pub(crate) fn offered_scopes(configured: &[String], declared: &DeclaredScopes) -> Vec<String> {
    let mut all = configured.to_vec();
    for scope in declared() {
        if !all.contains(&scope) {
            all.push(scope);
        }
    }
    all
}

/// RFC 8693 token exchange grant type.
pub(crate) const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 7523 §2.1 JWT bearer assertion grant type (also Entra ID's on-behalf-of request).
pub(crate) const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// RFC 8693 token type of an access token.
pub(crate) const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// RFC 7523 client assertion type.
pub(crate) const JWT_BEARER_ASSERTION: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long a metadata or JWKS fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest metadata or JWKS document accepted.
pub(crate) const MAX_DOCUMENT_BYTES: usize = 256 << 10;

/// Why a document could not be fetched. Never contains a token or secret: only the URL.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("{url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: HTTP {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("{url}: document too large")]
    TooLarge { url: String },
    #[error("{url}: not JSON: {source}")]
    NotJson {
        url: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Why an issuer's metadata could not be discovered.
#[derive(Debug, thiserror::Error)]
#[error("cannot discover the metadata of {issuer}: {}", attempts.join("; "))]
pub struct DiscoveryError {
    /// The issuer asked about.
    pub issuer: String,
    /// What each well-known URL answered.
    pub attempts: Vec<String>,
}

/// GET `url` as JSON: bounded in time and size, success statuses only.
pub(crate) async fn fetch_json(
    http: &reqwest::Client,
    url: &str,
) -> Result<serde_json::Value, FetchError> {
    let url_owned = || url.to_string();
    let resp = http
        .get(url)
        .timeout(FETCH_TIMEOUT)
        .send()
        .await
        .map_err(|source| FetchError::Transport {
            url: url_owned(),
            source,
        })?;
    if !resp.status().is_success() {
        return Err(FetchError::Status {
            url: url_owned(),
            status: resp.status(),
        });
    }
    if resp
        .content_length()
        .is_some_and(|n| n as usize > MAX_DOCUMENT_BYTES)
    {
        return Err(FetchError::TooLarge { url: url_owned() });
    }
    let bytes = resp.bytes().await.map_err(|source| FetchError::Transport {
        url: url_owned(),
        source,
    })?;
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(FetchError::TooLarge { url: url_owned() });
    }
    serde_json::from_slice(&bytes).map_err(|source| FetchError::NotJson {
        url: url_owned(),
        source,
    })
}

/// A response body of at most `max` bytes (`None` when it declares or sends more): what an
/// authorization server sends is read no further than the limit.
pub(crate) async fn read_bounded(
    mut resp: reqwest::Response,
    max: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > max {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// `url` split into its origin and its path (`https://as/t1` → `https://as`, `/t1`).
pub(crate) fn split_origin(url: &str) -> (&str, &str) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => url.split_at(after_scheme + i),
        None => (url, ""),
    }
}

/// An issuer's metadata: RFC 8414 first, then OIDC discovery; its `issuer` must equal
/// `issuer_id` exactly.
pub(crate) async fn discover(
    http: &reqwest::Client,
    issuer_id: &str,
) -> Result<serde_json::Value, DiscoveryError> {
    let issuer = issuer_id.trim_end_matches('/');
    let (origin, path) = split_origin(issuer);
    let mut candidates = vec![format!(
        "{origin}/.well-known/oauth-authorization-server{path}"
    )];
    if path.is_empty() {
        candidates.push(format!("{origin}/.well-known/openid-configuration"));
    } else {
        candidates.push(format!("{origin}/.well-known/openid-configuration{path}"));
        candidates.push(format!("{issuer}/.well-known/openid-configuration"));
    }
    let mut attempts = Vec::new();
    for url in candidates {
        match fetch_json(http, &url).await {
            Ok(doc) if doc["issuer"].as_str() == Some(issuer_id) => return Ok(doc),
            Ok(doc) => attempts.push(format!(
                "{url}: issuer {} does not match {issuer_id}",
                doc["issuer"]
            )),
            Err(e) => attempts.push(e.to_string()),
        }
    }
    Err(DiscoveryError {
        issuer: issuer_id.to_string(),
        attempts,
    })
}

#[cfg(test)]
mod tests {
    use super::split_origin;

    #[test]
    fn issuer_origin_and_path() {
        assert_eq!(
            split_origin("https://as.example"),
            ("https://as.example", "")
        );
        assert_eq!(
            split_origin("https://as.example/tenant1"),
            ("https://as.example", "/tenant1")
        );
        assert_eq!(
            split_origin("http://127.0.0.1:9000/realms/a"),
            ("http://127.0.0.1:9000", "/realms/a")
        );
    }
}
