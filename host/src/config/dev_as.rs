//! `[dev_as]`: the embedded development authorization server.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// `[dev_as]`: the embedded development authorization server, for the quickstart and tests.
/// It serves at `<public_url>/dev-as`; with `auth.mode = "oauth"` and no `[[auth.issuer]]` the
/// gateway trusts it automatically. Never enable it in production.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DevAsConfig {
    /// Serve the development authorization server.
    pub enabled: bool,
    /// Approve every authorization request as the first user, without a consent page
    /// (headless tests). Default false: a consent page with a user picker.
    pub auto_approve: bool,
    /// The users the consent page offers (the first is the auto-approve user).
    pub users: Vec<String>,
    /// Open dynamic client registration (RFC 7591).
    pub dcr: bool,
    /// Client ID metadata documents (https `client_id` URLs).
    pub cimd: bool,
    /// Pre-registered clients.
    pub clients: Vec<DevClient>,
    /// Access token lifetime, in seconds. Default 600.
    pub access_token_ttl_secs: u64,
    /// Refresh token lifetime, in seconds. Default 86400.
    pub refresh_token_ttl_secs: u64,
    /// Where to keep the signing key so restarts keep it; default: a new key at every start.
    pub key_file: Option<PathBuf>,
    /// Test hook: fixed https `client_id` URLs served from local files instead of the network,
    /// so client ID metadata document flows stay hermetic.
    pub cimd_documents: BTreeMap<String, PathBuf>,
    /// Audiences (downstream APIs) a confidential client may exchange a user's token for
    /// (RFC 8693), in addition to every `credential = "token-exchange"` service's audience.
    /// Anything else is `invalid_target`.
    pub exchange_audiences: Vec<String>,
    /// Serve the development AS although `server.listen` is not a loopback address (it
    /// issues tokens to anyone who asks). Default false: refused at start.
    pub allow_public: bool,
    /// Enterprise identity providers whose identity assertions (ID-JAG,
    /// `typ: oauth-id-jag+jwt`) a confidential client may trade for an access token with the
    /// RFC 7523 `jwt-bearer` grant (Enterprise-Managed Authorization).
    pub enterprise_idps: Vec<EnterpriseIdp>,
}

/// `[[dev_as.enterprise_idps]]`: an enterprise IdP the development AS trusts for
/// Enterprise-Managed Authorization.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnterpriseIdp {
    /// The IdP's issuer identifier: the `iss` of its identity assertions.
    pub issuer: String,
    /// Its public signing keys, a JWK set in a file (relative to the configuration file).
    pub jwks_file: PathBuf,
}

impl Default for DevAsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            auto_approve: false,
            users: vec!["alice".into(), "bob".into()],
            dcr: true,
            cimd: true,
            clients: Vec::new(),
            access_token_ttl_secs: 600,
            refresh_token_ttl_secs: 86_400,
            key_file: None,
            exchange_audiences: Vec::new(),
            cimd_documents: BTreeMap::new(),
            allow_public: false,
            enterprise_idps: Vec::new(),
        }
    }
}

/// `[[dev_as.clients]]`: a pre-registered client.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevClient {
    /// The client id.
    pub client_id: String,
    /// Display name on the consent page.
    pub name: Option<String>,
    /// Environment variable with the secret of a confidential client; none: a public client.
    pub client_secret_env: Option<String>,
    /// Exact redirect URIs.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Grant types. Default: authorization_code and refresh_token.
    #[serde(default = "default_grants")]
    pub grant_types: Vec<String>,
}

fn default_grants() -> Vec<String> {
    vec!["authorization_code".into(), "refresh_token".into()]
}
