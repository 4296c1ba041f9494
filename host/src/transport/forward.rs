//! Forwarding a request for a session another replica holds to that replica, and relaying
//! its answer.
//!
//! Owns: the HTTP client to peer replicas; which headers cross (everything the client sent,
//! its credential included (`Authorization`, and a `DPoP` proof, which the peer spends: this
//! replica only checked it) — the peer authenticates the caller itself and trusts nothing from
//! this replica — minus hop-by-hop headers, plus the mark [`FORWARDED`] so the
//! peer never forwards it again); both bodies streamed, so event streams (a `GET` stream, a
//! `POST` answered as SSE) pass through as they are produced; and the answer when the peer
//! cannot be reached (404, as for a session that no longer exists: the session is gone with
//! its replica, and SDK clients initialize again). Must not: decide where a session lives
//! (`sessions`), or read the bodies.

use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt as _;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::auth::Carried;
use crate::telemetry::metrics;

/// The header marking a request another replica forwarded (its value: that replica's id).
pub(crate) const FORWARDED: &str = "portcullis-forwarded";

/// How long connecting to a peer replica may take before it counts as gone.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Headers that describe one connection, not the request: never relayed (RFC 9110 §7.6.1).
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    ) || name == FORWARDED
}

fn relayed(from: &HeaderMap) -> HeaderMap {
    from.iter()
        .filter(|(name, _)| !hop_by_hop(name))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

/// The client this replica forwards with (one per process: its connections are pooled).
#[derive(Clone, Debug)]
pub(crate) struct Forwarder {
    client: reqwest::Client,
    /// This replica's id, the value of [`FORWARDED`].
    replica: HeaderValue,
}

impl Forwarder {
    /// A forwarder marking its requests as coming from `replica`.
    pub(crate) fn new(replica: &str) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            client,
            replica: HeaderValue::from_str(replica)?,
        })
    }

    /// Send the request (`parts`, `body`, and the caller's `authorization` the front took
    /// out of it) to the replica at `peer` (its id `replica`), and answer with its answer.
    pub(crate) async fn forward(
        &self,
        parts: &Parts,
        body: Body,
        credential: Carried,
        (replica, peer): (&str, &reqwest::Url),
    ) -> Response {
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let url = format!("{}{path}", peer.as_str().trim_end_matches('/'));
        let mut headers = relayed(&parts.headers);
        credential.restore(&mut headers);
        headers.insert(FORWARDED, self.replica.clone());
        let sent = self
            .client
            .request(parts.method.clone(), url)
            .headers(headers)
            .body(reqwest::Body::wrap_stream(body.into_data_stream()))
            .send()
            .await;
        let outcome = if sent.is_ok() { "ok" } else { "unreachable" };
        metrics::get().forwarded.add(
            1,
            &metrics::gateway_attrs(&[("portcullis.outcome", outcome)]),
        );
        match sent {
            Ok(answer) => {
                tracing::debug!(replica = %replica, status = answer.status().as_u16(),
                    "forwarded a session's request to the replica holding it");
                let (status, headers) = (answer.status(), relayed(answer.headers()));
                let mut resp = Response::new(Body::from_stream(
                    answer.bytes_stream().map_err(axum::Error::new),
                ));
                *resp.status_mut() = status;
                *resp.headers_mut() = headers;
                resp
            }
            Err(e) => {
                tracing::warn!(replica = %replica,
                    "the replica holding this session cannot be reached; answering 404 so the client starts a new session: {}",
                    if e.is_connect() { "connection failed" } else if e.is_timeout() { "timed out" } else { "request failed" });
                (StatusCode::NOT_FOUND, "Not Found: Session not found").into_response()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_headers_and_a_client_supplied_mark_are_not_relayed() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("portcullis-forwarded", "spoofed"),
            ("mcp-session-id", "s1"),
            ("accept", "application/json, text/event-stream"),
        ] {
            h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let relayed = relayed(&h);
        let kept: Vec<&str> = relayed.keys().map(HeaderName::as_str).collect();
        assert_eq!(kept, ["mcp-session-id", "accept"]);
    }
}
