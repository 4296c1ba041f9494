//! `credential = "user-consent"`: the user's own grant at the service's OAuth provider, from
//! the vault. No grant (or one the provider no longer honours) is a consent the user must
//! give: the call answers with the consent URL ([`CredentialError::ConsentRequired`]), which
//! the protocol layer turns into a URL elicitation. An expired access token is refreshed
//! (the refresh token rotated as the provider says) and kept again.

use std::sync::Arc;

use super::{Attached, Caller, CredentialError, Strategy};
use crate::config::ServiceConfig;
use crate::downstream::consent::Consent;
use crate::downstream::oauth_client::TokenError;
use crate::sandbox::BoxFuture;
use crate::vault::GrantKey;

pub(super) struct UserConsent {
    consent: Arc<Consent>,
    service: String,
}

impl UserConsent {
    pub(super) fn new(config: &ServiceConfig, consent: Arc<Consent>) -> Self {
        Self {
            consent,
            service: config.name.clone(),
        }
    }

    /// Whose grant: the caller's, identified by (tenant, issuer, subject).
    fn key<'a>(&'a self, caller: &'a Caller<'a>) -> Result<GrantKey<'a>, CredentialError> {
        let (Some(token), Some(user)) = (caller.subject, caller.user) else {
            return Err(CredentialError::NoCaller);
        };
        Ok(GrantKey {
            tenant: caller.tenant,
            issuer: token.issuer(),
            subject: user,
            service: &self.service,
        })
    }

    fn consent_required(&self, key: &GrantKey<'_>) -> CredentialError {
        CredentialError::ConsentRequired {
            service: self.service.clone(),
            url: self.consent.url(key),
        }
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl Strategy for UserConsent {
    fn attach<'a>(
        &'a self,
        caller: &'a Caller<'a>,
    ) -> BoxFuture<'a, Result<Attached, CredentialError>> {
        Box::pin(async move {
            let key = self.key(caller)?;
            let vault = self.consent.vault();
            let Some(grant) = vault.get(&key).await? else {
                return Err(self.consent_required(&key));
            };
            if grant.usable(now()) {
                return Attached::bearer(grant.access_token, "vault");
            }
            let (Some(refresh), Some(provider)) = (
                grant.refresh_token.as_deref(),
                self.consent.provider(caller.tenant, &self.service),
            ) else {
                vault.revoke(&key).await?;
                return Err(self.consent_required(&key));
            };
            match provider.refresh(refresh).await {
                Ok(fresh) => {
                    vault.put(&key, &fresh).await?;
                    Attached::bearer(fresh.access_token, "refreshed")
                }
                Err(TokenError::Refused { .. } | TokenError::StepUp { .. }) => {
                    // The provider no longer honours the grant (revoked there, or expired):
                    // the user consents again.
                    tracing::info!(tenant = caller.tenant, service = %self.service,
                        "the provider refused a user's refresh token; their grant was dropped");
                    vault.revoke(&key).await?;
                    Err(self.consent_required(&key))
                }
                Err(e) => Err(e.into()),
            }
        })
    }

    fn revoke<'a>(
        &'a self,
        caller: &'a Caller<'a>,
    ) -> BoxFuture<'a, Result<bool, CredentialError>> {
        Box::pin(async move {
            let key = self.key(caller)?;
            Ok(self.consent.vault().revoke(&key).await?)
        })
    }

    fn refused<'a>(&'a self, caller: &'a Caller<'a>) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            // The API refused the user's token: it was revoked at the provider. Drop the
            // grant; the retry asks for consent.
            let Ok(key) = self.key(caller) else {
                return false;
            };
            tracing::info!(tenant = caller.tenant, service = %self.service,
                "the service refused a user's token; their grant was dropped");
            self.consent.vault().revoke(&key).await.is_ok()
        })
    }
}
