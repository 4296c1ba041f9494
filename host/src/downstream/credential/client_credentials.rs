//! `credential = "client-credentials"`: the gateway's own token from the `client_credentials`
//! grant, for services called as the gateway rather than for a user; obtained at the
//! service's `issuer` (default: the `[exchange]` one).

use std::sync::Arc;

use super::{Caller, CredentialError, TokenSource};
use crate::config::ServiceConfig;
use crate::downstream::oauth_client::{Grant, OAuthClient, OAuthClients, TokenRequest};

pub(super) struct GatewayToken {
    clients: Arc<OAuthClients>,
    config: ServiceConfig,
}

impl GatewayToken {
    pub(super) fn new(config: &ServiceConfig, clients: Arc<OAuthClients>) -> Self {
        Self {
            clients,
            config: config.clone(),
        }
    }
}

impl TokenSource for GatewayToken {
    fn request<'a>(
        &'a self,
        caller: &'a Caller<'a>,
    ) -> Result<(&'a Arc<OAuthClient>, TokenRequest<'a>), CredentialError> {
        let client = self
            .clients
            .for_gateway(self.config.issuer.as_deref())
            .ok_or_else(|| CredentialError::NoClient {
                service: self.config.name.clone(),
                where_: "(no [exchange] client, nor one at the service's issuer)",
            })?;
        Ok((
            client,
            TokenRequest::for_service(caller.tenant, &self.config, Grant::ClientCredentials),
        ))
    }
}
