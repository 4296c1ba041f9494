//! A public OAuth client (PKCE S256, no secret) registered at an authorization server: the
//! authorization-code flow as an MCP client runs it, headlessly (following the redirect of an
//! auto-approving AS) or with a browser standing in for the person, and with pushed requests
//! (RFC 9126).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Where the client's redirects go: nothing listens there; the code is read from the
/// redirect itself.
pub const REDIRECT: &str = "http://127.0.0.1:9/callback";

/// A registered public client with its PKCE pair.
pub struct PublicClient {
    /// An HTTP client that does not follow redirects.
    pub http: reqwest::Client,
    /// The registered client id.
    pub client_id: String,
    verifier: String,
    challenge: String,
}

impl PublicClient {
    /// Register (RFC 7591) at `registration_endpoint` as `name`.
    pub async fn register(registration_endpoint: &str, name: &str) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let registered: Value = http
            .post(registration_endpoint)
            .json(&json!({"client_name": name, "redirect_uris": [REDIRECT],
                          "grant_types": ["authorization_code"], "response_types": ["code"],
                          "token_endpoint_auth_method": "none"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let client_id = registered["client_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{registered}"))
            .to_string();
        let verifier = format!("{:064x}", rand::random::<u128>());
        let challenge = B64.encode(Sha256::digest(&verifier));
        Self {
            http,
            client_id,
            verifier,
            challenge,
        }
    }

    /// The authorization request's parameters for `resource` and `scope`, then `extra`.
    pub fn request(
        &self,
        resource: &str,
        scope: &str,
        extra: &[(&str, &str)],
    ) -> Vec<(String, String)> {
        let mut params: Vec<(String, String)> = [
            ("response_type", "code"),
            ("client_id", self.client_id.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_challenge", self.challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("scope", scope),
            ("resource", resource),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        params.retain(|(_, v)| !v.is_empty());
        params
    }

    /// `authorization_endpoint` with `params` in its query.
    pub fn authorize_url(
        &self,
        authorization_endpoint: &str,
        params: &[(String, String)],
    ) -> String {
        let mut url = reqwest::Url::parse(authorization_endpoint).unwrap();
        url.query_pairs_mut().extend_pairs(params);
        url.to_string()
    }

    /// Push `params` to `par_endpoint` (RFC 9126): the AS's answer (`request_uri` or an error),
    /// with its status.
    pub async fn push(&self, par_endpoint: &str, params: &[(String, String)]) -> (u16, Value) {
        let r = self
            .http
            .post(par_endpoint)
            .form(params)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or_default())
    }

    /// The authorization URL for a pushed request: `client_id` and `request_uri` only.
    pub fn pushed_url(&self, authorization_endpoint: &str, request_uri: &str) -> String {
        self.authorize_url(
            authorization_endpoint,
            &[
                ("client_id".into(), self.client_id.clone()),
                ("request_uri".into(), request_uri.into()),
            ],
        )
    }

    /// GET `url` (an auto-approving AS's authorization URL): where it redirects to.
    pub async fn follow(&self, url: &str) -> String {
        let r = self.http.get(url).send().await.unwrap();
        r.headers()
            .get("location")
            .unwrap_or_else(|| panic!("{url}: {} without a redirect", r.status()))
            .to_str()
            .unwrap()
            .to_string()
    }

    /// The `code` of a redirect to [`REDIRECT`].
    pub fn code(location: &str) -> String {
        reqwest::Url::parse(location)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("no code in {location}"))
    }

    /// Redeem `code` at `token_endpoint` for `resource`, with a `DPoP` proof if given: the
    /// token response.
    pub async fn redeem(
        &self,
        token_endpoint: &str,
        code: &str,
        resource: &str,
        dpop: Option<String>,
    ) -> Value {
        let mut request = self.http.post(token_endpoint);
        if let Some(proof) = dpop {
            request = request.header("dpop", proof);
        }
        request
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", self.verifier.as_str()),
                ("client_id", self.client_id.as_str()),
                ("resource", resource),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}
