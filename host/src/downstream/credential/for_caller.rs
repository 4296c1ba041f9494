//! Credentials obtained for the caller with the caller's own token, presented only at the
//! issuer that issued it: `token-exchange` (RFC 8693), `jwt-bearer` (RFC 7523 §2.1) and
//! `on-behalf-of` (Entra ID's request). The three differ only in the grant's request; the
//! rules on whose token goes where are this file's and the same for all.

use std::sync::Arc;

use super::{Caller, CredentialError, TokenSource};
use crate::config::{CredentialMode, ServiceConfig};
use crate::downstream::oauth_client::{Grant, OAuthClient, OAuthClients, TokenRequest};

pub(super) struct ForCaller {
    clients: Arc<OAuthClients>,
    config: ServiceConfig,
    mode: CredentialMode,
}

impl ForCaller {
    pub(super) fn new(
        config: &ServiceConfig,
        clients: Arc<OAuthClients>,
        mode: CredentialMode,
    ) -> Self {
        Self {
            clients,
            config: config.clone(),
            mode,
        }
    }
}

impl TokenSource for ForCaller {
    /// The client at the caller's own issuer, and the request: anything else is an error,
    /// never a request to another authorization server.
    fn request<'a>(
        &'a self,
        caller: &'a Caller<'a>,
    ) -> Result<(&'a Arc<OAuthClient>, TokenRequest<'a>), CredentialError> {
        let subject = caller.subject.ok_or(CredentialError::NoCaller)?;
        if let Some(wanted) = self.config.issuer.as_deref()
            && wanted != subject.issuer()
        {
            return Err(CredentialError::OtherIssuer {
                service: self.config.name.clone(),
                issuer: wanted.to_string(),
            });
        }
        let client =
            self.clients
                .at(subject.issuer())
                .ok_or_else(|| CredentialError::NoClient {
                    service: self.config.name.clone(),
                    where_: "at the issuer of the caller's token (it is presented nowhere else)",
                })?;
        let grant = match self.mode {
            CredentialMode::JwtBearer => Grant::JwtBearer(subject),
            CredentialMode::OnBehalfOf => Grant::OnBehalfOf(subject),
            _ => Grant::Exchange(subject),
        };
        Ok((
            client,
            TokenRequest::for_service(caller.tenant, &self.config, grant),
        ))
    }
}
