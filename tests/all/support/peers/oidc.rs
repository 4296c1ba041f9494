//! node-oidc-provider, a real authorization server, on an ephemeral port.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::{node, root};

/// oidc-provider on an ephemeral port, issuing tokens for `resources`; killed on drop.
pub struct RealAs {
    pub issuer: String,
    _child: Child,
}

impl RealAs {
    pub async fn start(resources: &[String], scopes: &str) -> Self {
        Self::start_with(resources, scopes, &[]).await
    }

    /// An AS for `resource` (scopes `mcp:tools notes:read`) that exchanges tokens for
    /// `audience`, issuing them for `ttl` seconds, to the gateway client `gateway` (its
    /// `private_key_jwt` key: the test issuer's key `b`).
    pub async fn for_exchange(resource: &str, audience: &str, ttl: u64) -> Self {
        Self::for_exchange_with(resource, audience, ttl, &[]).await
    }

    /// [`RealAs::for_exchange`] with more of `tests/js/as.mjs`'s settings.
    pub async fn for_exchange_with(
        resource: &str,
        audience: &str,
        ttl: u64,
        more: &[(&str, &str)],
    ) -> Self {
        let jwks = root().join("tests/fixtures/test-issuer-b.jwk.json");
        let ttl = ttl.to_string();
        let mut env = vec![
            ("AS_EXCHANGE_RESOURCES", audience),
            ("AS_EXCHANGE_TTL", ttl.as_str()),
            ("AS_GATEWAY_JWKS", jwks.to_str().unwrap()),
        ];
        env.extend_from_slice(more);
        Self::start_with(&[resource.to_string()], "mcp:tools notes:read", &env).await
    }

    /// An AS issuing opaque access tokens (introspected by the gateway) for `resource`,
    /// scope `mcp:tools`.
    pub async fn opaque(resource: &str) -> Self {
        Self::start_with(
            &[resource.to_string()],
            "mcp:tools",
            &[("AS_TOKEN_FORMAT", "opaque")],
        )
        .await
    }

    pub async fn start_with(resources: &[String], scopes: &str, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(node());
        child.envs(env.iter().copied());
        let mut child = child
            .arg(root().join("tests/js/as.mjs"))
            .current_dir(root().join("tests"))
            .env("AS_RESOURCES", resources.join(" "))
            .env("AS_SCOPES", scopes)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    return v["issuer"].as_str().unwrap().to_string();
                }
            }
            panic!("oidc-provider exited before it was ready");
        })
        .await
        .expect("oidc-provider started");
        // Keep draining its output: a closed pipe would kill it on its next write.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            issuer: ready,
            _child: child,
        }
    }
}

impl RealAs {
    /// What `tests/js/user-token.mjs` got for `alice` at `resource` with `scope`
    /// (authorization code + PKCE as the AS's static public client, headless).
    pub async fn user_tokens_json(&self, resource: &str, scope: &str) -> Value {
        crate::support::run_json_program(
            &node(),
            "tests/js/user-token.mjs",
            &[self.issuer.as_ref(), resource.as_ref(), scope.as_ref()],
            &[],
        )
        .await
    }

    /// An access token for `alice` at `resource` with `scope`.
    pub async fn user_token(&self, resource: &str, scope: &str) -> String {
        let out = self.user_tokens_json(resource, scope).await;
        out["access_token"].as_str().unwrap().to_string()
    }

    /// Alice's access and refresh tokens at `resource` (`scope` gains `offline_access`).
    pub async fn user_tokens_with_refresh(&self, resource: &str, scope: &str) -> (String, String) {
        let out = self
            .user_tokens_json(resource, &format!("{scope} offline_access"))
            .await;
        let text = |k: &str| {
            out[k]
                .as_str()
                .unwrap_or_else(|| panic!("no {k} in {out}"))
                .to_string()
        };
        (text("access_token"), text("refresh_token"))
    }

    /// Revoke `token` (RFC 7009) as the public client it was issued to.
    pub async fn revoke(&self, token: &str) {
        let resp = reqwest::Client::new()
            .post(format!("{}/token/revocation", self.issuer))
            .form(&[("token", token), ("client_id", "test-public")])
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "revocation: {}", resp.status());
    }

    /// Every token, introspection and revocation request this AS received, in order:
    /// `{endpoint, grant_type, target, tokens: [sha256 hex], client, status}`.
    pub async fn requests(&self) -> Vec<Value> {
        reqwest::get(format!("{}/__requests", self.issuer))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// How many introspection requests this AS has answered so far.
    pub async fn introspections(&self) -> usize {
        self.requests()
            .await
            .iter()
            .filter(|r| r["endpoint"] == "introspection")
            .count()
    }

    /// How many tokens the AS issued for downstream audiences (exchanges, client credentials).
    pub async fn downstream_tokens_issued(&self) -> u64 {
        let v: Value = reqwest::get(format!("{}/__exchanges", self.issuer))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["count"].as_u64().unwrap()
    }
}
