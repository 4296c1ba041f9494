//! Client ID metadata documents (draft-ietf-oauth-client-id-metadata-document): a client whose
//! `client_id` is an https URL is described by the JSON document at that URL.
//!
//! Fetching a URL chosen by whoever calls `/authorize` is a server-side request forgery risk,
//! so the fetch is guarded: https only, a host that resolves only to public addresses (the
//! egress rules of `downstream::is_public`), pinned to the checked
//! address, no redirects, a size limit and a timeout. A test hook maps fixed URLs to local
//! files so tests stay hermetic.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::net::is_public;

/// Largest document accepted.
const MAX_BYTES: usize = 64 << 10;
/// How long a fetch may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A validated client description.
#[derive(Debug)]
pub(crate) struct ClientDocument {
    pub(crate) name: String,
    pub(crate) redirect_uris: Vec<String>,
}

/// Whether `client_id` is a URL this mechanism handles: https with a path beyond `/`.
pub(crate) fn is_metadata_url(client_id: &str) -> bool {
    reqwest::Url::parse(client_id)
        .is_ok_and(|u| u.scheme() == "https" && u.path() != "/" && !u.path().is_empty())
}

/// Fetch and validate the document for `client_id`.
pub(crate) async fn fetch(
    client_id: &str,
    test_documents: &BTreeMap<String, PathBuf>,
) -> Result<ClientDocument, String> {
    let text = match test_documents.get(client_id) {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the test document {}: {e}", path.display()))?,
        None => fetch_guarded(client_id).await?,
    };
    validate(client_id, &text)
}

async fn fetch_guarded(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|_| "client_id is not a URL".to_string())?;
    let host = parsed
        .host_str()
        .ok_or("client_id has no host")?
        .to_string();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    if addrs.is_empty() || addrs.iter().any(|a| !is_public(a.ip())) {
        return Err(format!(
            "{host} resolves to an address that may not be fetched (private, loopback, link-local or metadata)"
        ));
    }
    // Pin the checked address so a second lookup cannot rebind to an internal one.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .resolve(&host, addrs[0])
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let mut resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("fetching {url}: {}", e.without_url()))?;
    if !resp.status().is_success() {
        return Err(format!("fetching {url}: HTTP {}", resp.status()));
    }
    // Read at most MAX_BYTES, whatever the document claims or sends.
    let too_large = || "the client metadata document is too large".to_string();
    if resp.content_length().is_some_and(|n| n > MAX_BYTES as u64) {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| e.without_url().to_string())?
    {
        if bytes.len() + chunk.len() > MAX_BYTES {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|_| "the client metadata document is not UTF-8".into())
}

/// Check the document against the draft's rules.
pub(crate) fn validate(client_id: &str, text: &str) -> Result<ClientDocument, String> {
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| format!("the client metadata document is not JSON: {e}"))?;
    if doc["client_id"].as_str() != Some(client_id) {
        return Err(format!(
            "the document's client_id {} does not match its URL {client_id}",
            doc["client_id"]
        ));
    }
    let name = doc["client_name"]
        .as_str()
        .ok_or("the document has no client_name")?
        .to_string();
    let redirect_uris: Vec<String> = doc["redirect_uris"]
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or("the document has no redirect_uris")?
        .iter()
        .map(|u| {
            u.as_str()
                .map(str::to_string)
                .ok_or("redirect_uris must be strings")
        })
        .collect::<Result<_, _>>()?;
    // The same rules as dynamic registration: https, loopback http, or a private-use scheme.
    if let Some(bad) = redirect_uris
        .iter()
        .find(|u| !super::acceptable_redirect(u))
    {
        return Err(format!(
            "redirect_uri `{}` is not acceptable (https, http on loopback, or a private-use scheme)",
            crate::telemetry::untrusted(bad)
        ));
    }
    if let Some(m) = doc["token_endpoint_auth_method"].as_str()
        && (m == "client_secret_post" || m == "client_secret_basic")
    {
        return Err(format!(
            "token_endpoint_auth_method {m} is not allowed for a metadata document client"
        ));
    }
    Ok(ClientDocument {
        name,
        redirect_uris,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_fetched() {
        for bad in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(bad.parse().unwrap()), "{bad}");
        }
        for good in ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"] {
            assert!(is_public(good.parse().unwrap()), "{good}");
        }
    }

    #[test]
    fn metadata_urls_and_documents() {
        assert!(is_metadata_url("https://app.example/oauth/client.json"));
        assert!(!is_metadata_url("https://app.example/"));
        assert!(!is_metadata_url("http://app.example/client.json"));
        assert!(!is_metadata_url("plain-client-id"));
        let id = "https://app.example/client.json";
        let ok = format!(
            r#"{{"client_id":"{id}","client_name":"App","redirect_uris":["http://127.0.0.1:1/cb"]}}"#
        );
        assert_eq!(validate(id, &ok).unwrap().name, "App");
        let wrong = ok.replace(id, "https://other.example/client.json");
        assert!(validate(id, &wrong).unwrap_err().contains("does not match"));
        let secret = ok.replace(
            "\"client_name\"",
            "\"token_endpoint_auth_method\":\"client_secret_basic\",\"client_name\"",
        );
        assert!(validate(id, &secret).is_err());
    }
}
