//! What the gateway adds to a service request: one strategy per kind of credential
//! (`[[tenant.service]] credential`), each in its own file behind [`Strategy`].
//!
//! Owns: the interface, the typed error a plugin sees as `credential` ([`CredentialError`]),
//! and which strategy serves a service. Must not: send or guard the service request
//! (`downstream`), or speak to a token endpoint (`oauth_client`).

mod client_credentials;
mod consent;
mod for_caller;
mod static_header;

use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use super::oauth_client::{OAuthClient, OAuthClients, TokenError, TokenRequest};
use crate::auth::SecretToken;
use crate::config::{CredentialMode, ServiceConfig};
use crate::sandbox::BoxFuture;

/// Who one service request is for: the tenant, and the caller's token (kept by the host, for
/// the strategies that present it at the issuer that issued it; never sent to a service).
pub(crate) struct Caller<'a> {
    pub(crate) tenant: &'a str,
    pub(crate) subject: Option<&'a SecretToken>,
    /// The caller's subject (`sub`) at the token's issuer.
    pub(crate) user: Option<&'a str>,
}

/// A credential header for one request, and the secret in it (the response is checked for
/// it before a plugin sees it).
pub(crate) struct Attached {
    pub(crate) name: HeaderName,
    pub(crate) value: HeaderValue,
    pub(crate) secret: String,
    /// Where a token came from (the record's `cache`: `hit`, `shared`, `replica`, `issued`;
    /// `vault` or `refreshed` for a user's grant); `None` for a fixed header.
    pub(crate) source: Option<&'static str>,
}

impl Attached {
    /// `Authorization: Bearer <token>`, obtained from `source`.
    fn bearer(token: String, source: &'static str) -> Result<Self, CredentialError> {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| CredentialError::Unusable)?;
        value.set_sensitive(true);
        Ok(Self {
            name: http::header::AUTHORIZATION,
            value,
            secret: token,
            source: Some(source),
        })
    }
}

/// Why no credential could be attached. Never contains a token or a secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The strategy presents the caller's token, and this request has none.
    #[error(
        "this request carries no user token to present (authentication is off or this is stdio)"
    )]
    NoCaller,
    /// The service takes tokens from one issuer, and the caller's is from another.
    #[error(
        "`{service}` accepts only tokens obtained at {issuer}; this caller's token was issued by another authorization server"
    )]
    OtherIssuer { service: String, issuer: String },
    /// The gateway has no OAuth client where the token would come from.
    #[error("the gateway has no OAuth client to obtain a token for `{service}` {where_}")]
    NoClient {
        service: String,
        where_: &'static str,
    },
    /// The authorization server's answer is not a usable header value.
    #[error("the authorization server issued a token that is not a valid header value")]
    Unusable,
    /// The token endpoint refused or failed.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The user has not consented to this service (or their grant was dropped): they must,
    /// at `url`.
    #[error("`{service}` needs the user's consent first (their client is asked for it)")]
    ConsentRequired { service: String, url: String },
    /// The vault could not be read or written; nothing is sent.
    #[error("the vault of users' grants failed: {0}")]
    Vault(crate::vault::VaultError),
}

/// How the gateway authenticates to one service.
pub(crate) trait Strategy: Send + Sync {
    /// The credential for one request of `caller`.
    fn attach<'a>(
        &'a self,
        caller: &'a Caller<'a>,
    ) -> BoxFuture<'a, Result<Attached, CredentialError>>;
    /// The service answered 401 to what was attached: forget it. `true`: a fresh one is
    /// worth one retry.
    fn refused<'a>(&'a self, caller: &'a Caller<'a>) -> BoxFuture<'a, bool>;
    /// The header this strategy sets when it is fixed (plugins may never set it).
    fn header(&self) -> Option<&HeaderName> {
        None
    }
    /// Forget what the gateway keeps for `caller` at this service (their grant): whether
    /// there was something. Strategies that keep nothing per caller keep nothing to forget.
    fn revoke<'a>(
        &'a self,
        _caller: &'a Caller<'a>,
    ) -> BoxFuture<'a, Result<bool, CredentialError>> {
        Box::pin(async { Ok(false) })
    }
}

/// A strategy whose credential is a token from an authorization server: it says which
/// client asks for which token, and shares how tokens are attached and forgotten.
trait TokenSource: Send + Sync {
    /// The client to ask, and the request, for `caller`.
    fn request<'a>(
        &'a self,
        caller: &'a Caller<'a>,
    ) -> Result<(&'a Arc<OAuthClient>, TokenRequest<'a>), CredentialError>;
}

impl<T: TokenSource> Strategy for T {
    fn attach<'a>(
        &'a self,
        caller: &'a Caller<'a>,
    ) -> BoxFuture<'a, Result<Attached, CredentialError>> {
        Box::pin(async move {
            let (client, request) = self.request(caller)?;
            let (token, source) = client.token_from(&request).await?;
            Attached::bearer(token, source)
        })
    }

    fn refused<'a>(&'a self, caller: &'a Caller<'a>) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let Ok((client, request)) = self.request(caller) else {
                return false;
            };
            client.evict(&request).await;
            true
        })
    }
}

/// The strategy `config.credential` names (`None`: no credential); fails on a missing secret.
pub(crate) fn for_service(
    config: &ServiceConfig,
    oauth: &Arc<OAuthClients>,
    consent: Option<&Arc<super::consent::Consent>>,
) -> anyhow::Result<Option<Box<dyn Strategy>>> {
    Ok(match config.credential {
        CredentialMode::UserConsent => {
            let consent = consent.ok_or_else(|| {
                anyhow::anyhow!(
                    "service `{}`: user-consent needs [vault] and a provider",
                    config.name
                )
            })?;
            Some(Box::new(consent::UserConsent::new(config, consent.clone())))
        }
        CredentialMode::None => None,
        CredentialMode::Static => Some(Box::new(static_header::StaticHeader::new(config)?)),
        CredentialMode::ClientCredentials => Some(Box::new(client_credentials::GatewayToken::new(
            config,
            oauth.clone(),
        ))),
        mode @ (CredentialMode::TokenExchange
        | CredentialMode::JwtBearer
        | CredentialMode::OnBehalfOf) => Some(Box::new(for_caller::ForCaller::new(
            config,
            oauth.clone(),
            mode,
        ))),
    })
}
