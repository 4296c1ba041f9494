//! `[vault]`: where users' grants at third-party providers are kept, and the keys that seal
//! them.

use std::path::PathBuf;

use serde::Deserialize;

/// `[vault]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// Environment variable holding the current key: 32 random bytes, base64
    /// (`openssl rand -base64 32`). Every grant is sealed with it.
    pub key_env: String,
    /// The current key's id, written beside every grant it seals, `[A-Za-z0-9._-]{1,32}`.
    pub key_id: String,
    /// Keys rotated out: grants they sealed are still opened (and sealed again with the
    /// current key when read) until they are removed from this list.
    #[serde(default)]
    pub previous: Vec<VaultKeyConfig>,
    /// One node: the directory grants are kept in (relative to this file), one sealed file
    /// per grant. With `[cluster]` grants are kept on Redis instead. Default `vault`.
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
}

/// A key rotated out, in `[[vault.previous]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultKeyConfig {
    pub key_id: String,
    pub key_env: String,
}

fn default_dir() -> PathBuf {
    PathBuf::from("vault")
}
