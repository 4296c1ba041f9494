//! `notes-api`: a small downstream API for the Portcullis demo that accepts **only** tokens
//! the gateway obtained by RFC 8693 token exchange.
//!
//! Every request must carry a bearer JWT that
//! - is signed by a key of `--issuer` (found via RFC 8414 / OIDC discovery, then `jwks_uri`),
//! - has `iss` = `--issuer`, `aud` = this API (`--audience`, default `http://<listen>/api`),
//!   and has not expired,
//! - has an `act` claim naming the gateway (`--actor`, default `gateway`): the user's own
//!   MCP token has no `act` and is refused,
//! - has scope `notes:read` for `GET /api/notes` and `notes:write` for `POST /api/notes`.
//!
//! Notes are kept in memory per user (`sub`). Answers say who the note belongs to and who
//! acted, so the demo shows the chain user → client → gateway → API.
//!
//! ```text
//! cargo run -p notes-api -- --listen 127.0.0.1:8090 --issuer http://127.0.0.1:8080/dev-as
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::Parser;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::Mutex;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// The authorization server whose exchanged tokens this API accepts.
    #[arg(long)]
    issuer: String,
    /// This API's audience; default `http://<listen>/api`.
    #[arg(long)]
    audience: Option<String>,
    /// The `act.sub` exchanged tokens must carry: the gateway's client id.
    #[arg(long, default_value = "gateway")]
    actor: String,
}

struct Api {
    issuer: String,
    audience: String,
    actor: String,
    http: reqwest::Client,
    keys: Mutex<JwkSet>,
    notes: Mutex<HashMap<String, Vec<String>>>,
}

/// A refusal with an RFC 6750 challenge.
fn refuse(status: StatusCode, error: &str, why: &str) -> Response {
    eprintln!("notes-api: refused ({status}): {why}");
    let challenge = format!("Bearer error=\"{error}\", error_description=\"{why}\"");
    (
        status,
        [("www-authenticate", challenge)],
        axum::Json(json!({"error": error, "error_description": why})),
    )
        .into_response()
}

impl Api {
    async fn refresh_keys(&self) -> Result<(), String> {
        let base = self.issuer.trim_end_matches('/');
        let mut meta = Value::Null;
        for path in [
            "/.well-known/oauth-authorization-server",
            "/.well-known/openid-configuration",
        ] {
            if let Ok(r) = self.http.get(format!("{base}{path}")).send().await
                && r.status().is_success()
            {
                meta = r.json().await.map_err(|e| e.to_string())?;
                break;
            }
        }
        let jwks_uri = meta["jwks_uri"]
            .as_str()
            .ok_or("the issuer's metadata has no jwks_uri")?;
        let set: JwkSet = self
            .http
            .get(jwks_uri)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        *self.keys.lock() = set;
        Ok(())
    }

    /// The verified claims of the request's token, if it has the `scope` it needs.
    async fn authorize(&self, headers: &HeaderMap, scope: &str) -> Result<Value, Response> {
        let unauthorized = |why: &str| refuse(StatusCode::UNAUTHORIZED, "invalid_token", why);
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| unauthorized("a bearer token is required"))?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| unauthorized("not a JWT"))?;
        if !matches!(
            header.alg,
            Algorithm::RS256 | Algorithm::PS256 | Algorithm::ES256
        ) {
            return Err(unauthorized("unsupported signing algorithm"));
        }
        let kid = header.kid.unwrap_or_default();
        if self.keys.lock().find(&kid).is_none() {
            self.refresh_keys()
                .await
                .map_err(|e| unauthorized(&format!("cannot fetch the issuer's keys: {e}")))?;
        }
        let key = {
            let keys = self.keys.lock();
            let jwk = keys
                .find(&kid)
                .ok_or_else(|| unauthorized("signed by an unknown key"))?;
            DecodingKey::from_jwk(jwk).map_err(|_| unauthorized("unusable key"))?
        };
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(|e| unauthorized(&format!("token rejected: {e}")))?
            .claims;
        if claims["act"]["sub"].as_str() != Some(&self.actor) {
            return Err(unauthorized(&format!(
                "this API accepts only tokens exchanged by {} (no matching act claim)",
                self.actor
            )));
        }
        let scopes = claims["scope"].as_str().unwrap_or_default();
        if !scopes.split_whitespace().any(|s| s == scope) {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                &format!("{scope} is required"),
            ));
        }
        Ok(claims)
    }
}

async fn list(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    let claims = match api.authorize(&headers, "notes:read").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let user = claims["sub"].as_str().unwrap_or_default();
    let notes = api.notes.lock().get(user).cloned().unwrap_or_default();
    axum::Json(json!({"user": user, "actor": claims["act"]["sub"], "notes": notes})).into_response()
}

async fn add(State(api): State<Arc<Api>>, headers: HeaderMap, body: String) -> Response {
    let claims = match api.authorize(&headers, "notes:write").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let text = body.trim();
    if text.is_empty() || text.len() > 1000 {
        return (StatusCode::BAD_REQUEST, "a note is 1 to 1000 bytes of text").into_response();
    }
    let user = claims["sub"].as_str().unwrap_or_default().to_string();
    let count = {
        let mut notes = api.notes.lock();
        let mine = notes.entry(user.clone()).or_default();
        mine.push(text.to_string());
        mine.len()
    };
    (
        StatusCode::CREATED,
        axum::Json(json!({"user": user, "actor": claims["act"]["sub"], "count": count})),
    )
        .into_response()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let audience = args
        .audience
        .unwrap_or(format!("http://{}/api", listener.local_addr()?));
    let api = Arc::new(Api {
        issuer: args.issuer,
        audience,
        actor: args.actor,
        http: reqwest::Client::new(),
        keys: Mutex::new(JwkSet { keys: Vec::new() }),
        notes: Mutex::default(),
    });
    let app = axum::Router::new()
        .route("/api/notes", get(list).post(add))
        .with_state(api.clone());
    eprintln!(
        "notes-api: listening on http://{}/api for tokens from {} (audience {}, actor {})",
        listener.local_addr()?,
        api.issuer,
        api.audience,
        api.actor
    );
    axum::serve(listener, app).await?;
    Ok(())
}
