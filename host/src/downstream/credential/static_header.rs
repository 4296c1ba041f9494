//! `credential = "static"`: a fixed header value from the environment, the same for every
//! caller (local and stdio deployments, API keys).

use http::{HeaderName, HeaderValue};

use super::{Attached, Caller, CredentialError, Strategy};
use crate::config::ServiceConfig;
use crate::sandbox::BoxFuture;

pub(super) struct StaticHeader {
    name: HeaderName,
    value: HeaderValue,
}

impl StaticHeader {
    /// The header `header_name` (default `authorization`) with the value of `header_env`.
    pub(super) fn new(config: &ServiceConfig) -> anyhow::Result<Self> {
        let var = config.header_env.clone().unwrap_or_default();
        let value = crate::config::secret_from_env(&var)
            .map_err(|e| anyhow::anyhow!("service `{}`: header_env: {e}", config.name))?;
        let mut value = HeaderValue::from_str(&value).map_err(|_| {
            anyhow::anyhow!(
                "service `{}`: {var} is not a valid header value",
                config.name
            )
        })?;
        value.set_sensitive(true);
        let name = HeaderName::from_bytes(
            config
                .header_name
                .as_deref()
                .unwrap_or("authorization")
                .as_bytes(),
        )?;
        Ok(Self { name, value })
    }
}

impl Strategy for StaticHeader {
    fn attach<'a>(
        &'a self,
        _caller: &'a Caller<'a>,
    ) -> BoxFuture<'a, Result<Attached, CredentialError>> {
        Box::pin(async move {
            Ok(Attached {
                name: self.name.clone(),
                value: self.value.clone(),
                secret: self.value.to_str().unwrap_or_default().to_string(),
                source: None,
            })
        })
    }

    fn refused<'a>(&'a self, _caller: &'a Caller<'a>) -> BoxFuture<'a, bool> {
        // The same value again would be refused again.
        Box::pin(async { false })
    }

    fn header(&self) -> Option<&HeaderName> {
        Some(&self.name)
    }
}
