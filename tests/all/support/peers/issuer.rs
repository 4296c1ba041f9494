//! A minimal authorization server: RFC 8414 metadata and a JWKS the test can swap, with
//! tokens signed by the test's fixture keys.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::routing::get;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::support::root;

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(root().join("tests/fixtures").join(name)).unwrap()
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A minimal authorization server: metadata and a JWKS the test can swap.
pub struct TestIssuer {
    pub url: String,
    jwks: Arc<Mutex<Value>>,
    pub fetches: Arc<AtomicUsize>,
    pub stop: CancellationToken,
}

impl TestIssuer {
    pub async fn start(keys: &[&str]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let jwks = Arc::new(Mutex::new(Value::Null));
        let fetches = Arc::new(AtomicUsize::new(0));
        let metadata = json!({
            "issuer": url,
            "authorization_endpoint": format!("{url}/authorize"),
            "token_endpoint": format!("{url}/token"),
            "jwks_uri": format!("{url}/jwks"),
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
        });
        let (j, f) = (jwks.clone(), fetches.clone());
        let app = axum::Router::new()
            .route(
                "/.well-known/oauth-authorization-server",
                get(move || async move { axum::Json(metadata) }),
            )
            .route(
                "/jwks",
                get(move || {
                    let (j, f) = (j.clone(), f.clone());
                    async move {
                        f.fetch_add(1, Ordering::SeqCst);
                        axum::Json(j.lock().clone())
                    }
                }),
            );
        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { s.cancelled().await })
                .await
                .unwrap();
        });
        let issuer = Self {
            url,
            jwks,
            fetches,
            stop,
        };
        issuer.publish(keys);
        issuer
    }

    /// Serve exactly these keys (`"a"`, `"b"`).
    pub fn publish(&self, keys: &[&str]) {
        let keys: Vec<Value> = keys
            .iter()
            .map(|k| {
                serde_json::from_slice(&fixture(&format!("test-issuer-{k}.jwk.json"))).unwrap()
            })
            .collect();
        *self.jwks.lock() = json!({ "keys": keys });
    }

    /// A token signed by key `k` with `claims` (standard ones filled in unless given).
    pub fn token(&self, k: &str, claims: Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(format!("test-key-{k}"));
        header.typ = Some("at+jwt".into());
        let key = EncodingKey::from_rsa_pem(&fixture(&format!("test-issuer-{k}.pem"))).unwrap();
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
