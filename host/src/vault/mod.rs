//! The vault: what users granted the gateway at third-party providers (their access and
//! refresh tokens, for `credential = "user-consent"` services), kept sealed.
//!
//! Owns: the identity a grant belongs to ([`GrantKey`]: tenant, issuer, subject, service), the
//! key ring that seals grants ([`KeyRing`]: AES-256-GCM, one current key and the keys rotated
//! out, each value naming its key), the names grants are stored under (keyed digests: whoever
//! reads the store can confirm no user), and the port a store implements ([`VaultStore`]):
//! sealed text under a name. `file` is the one-node store; `cluster` implements it on Redis.
//! Must not: obtain or refresh tokens (`downstream`), or log, trace or return anything of a
//! grant but its name.

mod file;

use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use file::FileStore;

use crate::config::{Config, VaultConfig};

/// The format of a sealed grant: `v1.<key id>.<base64 nonce ‖ ciphertext ‖ tag>`.
const FORMAT: &str = "v1";

/// Whose grant, for which service. Every part is in the name and the seal's associated data.
#[derive(Clone, Copy)]
pub struct GrantKey<'a> {
    pub tenant: &'a str,
    pub issuer: &'a str,
    pub subject: &'a str,
    pub service: &'a str,
}

/// What a user granted at a provider. Never printed: its `Debug` shows no token.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Grant {
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// When the access token expires, in seconds since the epoch.
    pub expires_at: u64,
    /// The scopes the provider granted, as it said them.
    pub scope: Option<String>,
    /// When it was issued, in seconds since the epoch.
    #[serde(default)]
    pub issued_at: u64,
}

impl Grant {
    /// Whether the access token is still good at `now`, leaving a margin (30 s, or a tenth
    /// of a short lifetime) for the request it goes on.
    pub fn usable(&self, now: u64) -> bool {
        let lifetime = self.expires_at.saturating_sub(self.issued_at);
        self.expires_at > now + (lifetime / 10).min(30)
    }
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("refreshable", &self.refresh_token.is_some())
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Why the vault could not answer. Never contains a grant.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VaultError {
    /// The store could not be read or written.
    #[error("the vault's store is unavailable: {0}")]
    Unavailable(String),
    /// A grant sealed with a key the vault does not have (removed from `[[vault.previous]]`).
    #[error("a grant is sealed with key `{0}`, which is not configured (current or previous)")]
    UnknownKey(String),
    /// A grant that does not open: the key's material is not the one that sealed it, or the
    /// value was changed.
    #[error("a grant does not open with key `{0}` (wrong key material, or the value was altered)")]
    Unreadable(String),
}

/// Where sealed grants are kept: text under a name (the names are keyed digests).
pub trait VaultStore: Send + Sync {
    /// The sealed text under `name`.
    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<String>, VaultError>>;
    /// Keep `sealed` under `name` (replacing it).
    fn put<'a>(&'a self, name: &'a str, sealed: &'a str) -> BoxFuture<'a, Result<(), VaultError>>;
    /// Forget `name`: whether there was something.
    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, VaultError>>;
}

/// One key: its id, the AEAD key, and the key names are derived with.
struct Key {
    id: String,
    seal: LessSafeKey,
    names: hmac::Hmac<Sha256>,
}

impl Key {
    fn new(id: &str, material: &[u8]) -> Result<Self, String> {
        use hmac::Mac as _;
        if material.len() != 32 {
            return Err(format!(
                "the key must be 32 bytes (base64 of `openssl rand -base64 32`), not {}",
                material.len()
            ));
        }
        let derive = |purpose: &[u8]| -> [u8; 32] {
            let mut h = Sha256::new();
            h.update(purpose);
            h.update(material);
            h.finalize().into()
        };
        let seal = UnboundKey::new(&AES_256_GCM, &derive(b"portcullis-vault-seal/v1"))
            .map_err(|_| "the key is not an AES-256 key".to_string())?;
        Ok(Self {
            id: id.to_string(),
            seal: LessSafeKey::new(seal),
            names: hmac::Hmac::<Sha256>::new_from_slice(&derive(b"portcullis-vault-name/v1"))
                .expect("HMAC takes any key length"),
        })
    }

    /// The name a grant for `key` is stored under with this key.
    fn name(&self, key: &GrantKey<'_>) -> String {
        use hmac::Mac as _;
        let mut mac = self.names.clone();
        for part in [key.tenant, key.issuer, key.subject, key.service] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        format!(
            "{}-{}",
            key.tenant,
            hex::encode(mac.finalize().into_bytes())
        )
    }
}

/// The keys grants are sealed with: the current one first, then the ones rotated out.
pub struct KeyRing(Vec<Key>);

impl KeyRing {
    /// The ring `[vault]` describes; fails (closed) on a missing variable, material that is
    /// not 32 bytes of base64, or a bad or repeated key id.
    pub fn from_config(v: &VaultConfig) -> anyhow::Result<Self> {
        let mut keys = Vec::new();
        let all = std::iter::once((&v.key_id, &v.key_env))
            .chain(v.previous.iter().map(|p| (&p.key_id, &p.key_env)));
        for (i, (id, env)) in all.enumerate() {
            let at = if i == 0 {
                "vault".to_string()
            } else {
                format!("vault.previous[{}]", i - 1)
            };
            let valid_id = !id.is_empty()
                && id.len() <= 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !valid_id {
                anyhow::bail!("{at}.key_id: `{id}` is not [A-Za-z0-9._-]{{1,32}}");
            }
            if keys.iter().any(|k: &Key| &k.id == id) {
                anyhow::bail!("{at}.key_id: `{id}` is used twice");
            }
            let text = crate::config::secret_from_env(env)
                .map_err(|e| anyhow::anyhow!("{at}.key_env: {e}"))?;
            let material = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|_| anyhow::anyhow!("{at}.key_env: {env} is not base64"))?;
            keys.push(
                Key::new(id, &material).map_err(|e| anyhow::anyhow!("{at}.key_env: {env}: {e}"))?,
            );
        }
        Ok(Self(keys))
    }

    /// A ring of `(id, material)` pairs, the current key first (tests, tools).
    pub fn from_keys(keys: &[(&str, [u8; 32])]) -> Self {
        Self(
            keys.iter()
                .map(|(id, m)| Key::new(id, m).expect("32 bytes"))
                .collect(),
        )
    }

    fn current(&self) -> &Key {
        &self.0[0]
    }

    /// `plain` sealed with the current key, bound to `aad`.
    fn seal(&self, aad: &str, mut data: Vec<u8>) -> String {
        let key = self.current();
        let nonce: [u8; NONCE_LEN] = rand::random();
        key.seal
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut data,
            )
            .expect("sealing a small value cannot fail");
        let mut sealed = nonce.to_vec();
        sealed.extend(data);
        format!(
            "{FORMAT}.{}.{}",
            key.id,
            base64::engine::general_purpose::STANDARD.encode(sealed)
        )
    }

    /// What `text` holds if it opens for `aad`, and whether a key other than the current
    /// one sealed it.
    fn open(&self, aad: &str, text: &str) -> Result<(Vec<u8>, bool), VaultError> {
        let mut parts = text.splitn(3, '.');
        let (Some(FORMAT), Some(id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(VaultError::Unreadable("?".into()));
        };
        let Some((index, key)) = self.0.iter().enumerate().find(|(_, k)| k.id == id) else {
            return Err(VaultError::UnknownKey(crate::telemetry::untrusted(id)));
        };
        let unreadable = || VaultError::Unreadable(key.id.clone());
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| unreadable())?;
        let (nonce, data) = bytes.split_at_checked(NONCE_LEN).ok_or_else(unreadable)?;
        let mut data = data.to_vec();
        let plain = key
            .seal
            .open_in_place(
                Nonce::try_assume_unique_for_key(nonce).map_err(|_| unreadable())?,
                Aad::from(aad.as_bytes()),
                &mut data,
            )
            .map_err(|_| unreadable())?;
        Ok((plain.to_vec(), index != 0))
    }

    fn seal_grant(&self, name: &str, grant: &Grant) -> String {
        self.seal(
            &aad(name),
            serde_json::to_vec(grant).expect("a grant serializes"),
        )
    }

    fn open_grant(&self, name: &str, text: &str) -> Result<(Grant, bool), VaultError> {
        let (plain, stale) = self.open(&aad(name), text)?;
        let grant = serde_json::from_slice(&plain)
            .map_err(|_| VaultError::Unreadable(self.current().id.clone()))?;
        Ok((grant, stale))
    }
}

/// What a sealed value is bound to: its purpose and its name (a value copied under another
/// name does not open).
fn aad(name: &str) -> String {
    format!("portcullis-vault/{FORMAT}/{name}")
}

/// Grants, sealed, in a store.
pub struct Vault {
    keys: KeyRing,
    store: Arc<dyn VaultStore>,
}

impl Vault {
    pub fn new(keys: KeyRing, store: Arc<dyn VaultStore>) -> Self {
        Self { keys, store }
    }

    /// The vault `config` describes with the one-node file store, if it has a `[vault]`;
    /// `shared`: the store replicas share instead (Redis, with `[cluster]`).
    pub fn from_config(
        config: &Config,
        shared: Option<Arc<dyn VaultStore>>,
    ) -> anyhow::Result<Option<Arc<Self>>> {
        let Some(v) = &config.vault else {
            return Ok(None);
        };
        let keys = KeyRing::from_config(v)
            .map_err(|e| anyhow::anyhow!("{}: {e}", config.source.display()))?;
        let store = match shared {
            Some(store) => store,
            None => Arc::new(FileStore::open(&config.resolve_path(&v.dir))?),
        };
        Ok(Some(Arc::new(Self::new(keys, store))))
    }

    /// `key`'s grant, if there is one. A grant sealed with a key rotated out is sealed again
    /// with the current key (and kept under the current key's name).
    pub async fn get(&self, key: &GrantKey<'_>) -> Result<Option<Grant>, VaultError> {
        let current = self.keys.current().name(key);
        for (i, k) in self.keys.0.iter().enumerate() {
            let name = if i == 0 { current.clone() } else { k.name(key) };
            let Some(text) = self.store.get(&name).await? else {
                continue;
            };
            let (grant, stale) = self.keys.open_grant(&name, &text)?;
            if stale || i != 0 {
                self.put(key, &grant).await?;
                if i != 0 {
                    self.store.delete(&name).await?;
                }
                tracing::info!(
                    tenant = key.tenant,
                    "a grant was sealed again with the current vault key"
                );
            }
            return Ok(Some(grant));
        }
        Ok(None)
    }

    /// Keep `grant` as `key`'s.
    pub async fn put(&self, key: &GrantKey<'_>, grant: &Grant) -> Result<(), VaultError> {
        let name = self.keys.current().name(key);
        let sealed = self.keys.seal_grant(&name, grant);
        self.store.put(&name, &sealed).await
    }

    /// `plain` sealed for `purpose` (a consent flow's ticket, say): only this vault's keys
    /// open it, and only for the same purpose.
    pub fn seal_note(&self, purpose: &str, plain: &[u8]) -> String {
        self.keys.seal(
            &format!("portcullis-vault/{FORMAT}/note/{purpose}"),
            plain.to_vec(),
        )
    }

    /// What [`Vault::seal_note`] sealed for `purpose`, if `text` opens.
    pub fn open_note(&self, purpose: &str, text: &str) -> Option<Vec<u8>> {
        self.keys
            .open(&format!("portcullis-vault/{FORMAT}/note/{purpose}"), text)
            .ok()
            .map(|(plain, _)| plain)
    }

    /// Forget `key`'s grant (under every key's name): whether there was one.
    pub async fn revoke(&self, key: &GrantKey<'_>) -> Result<bool, VaultError> {
        let mut any = false;
        for k in &self.keys.0 {
            any |= self.store.delete(&k.name(key)).await?;
        }
        Ok(any)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use parking_lot::Mutex;

    use super::*;

    /// A store the test can read and tamper with.
    #[derive(Default)]
    struct Memory(Mutex<HashMap<String, String>>);

    impl VaultStore for Memory {
        fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<String>, VaultError>> {
            Box::pin(async move { Ok(self.0.lock().get(name).cloned()) })
        }
        fn put<'a>(
            &'a self,
            name: &'a str,
            sealed: &'a str,
        ) -> BoxFuture<'a, Result<(), VaultError>> {
            Box::pin(async move {
                self.0.lock().insert(name.into(), sealed.into());
                Ok(())
            })
        }
        fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, VaultError>> {
            Box::pin(async move { Ok(self.0.lock().remove(name).is_some()) })
        }
    }

    const ALICE: GrantKey<'static> = GrantKey {
        tenant: "a",
        issuer: "https://idp.example",
        subject: "alice",
        service: "github",
    };

    fn grant() -> Grant {
        Grant {
            access_token: "gho_ALICEACCESS".into(),
            refresh_token: Some("ghr_ALICEREFRESH".into()),
            expires_at: 2_000_000_000,
            scope: Some("repo".into()),
            issued_at: 1_999_996_400,
        }
    }

    #[tokio::test]
    async fn grants_are_sealed_under_names_that_confirm_no_one() {
        let store = Arc::new(Memory::default());
        let vault = Vault::new(KeyRing::from_keys(&[("k2", [7; 32])]), store.clone());
        vault.put(&ALICE, &grant()).await.unwrap();
        let kept = store.0.lock().clone();
        let (name, sealed) = kept.iter().next().unwrap();
        for secret in [
            "gho_ALICEACCESS",
            "ghr_ALICEREFRESH",
            "alice",
            "github",
            "idp.example",
        ] {
            assert!(
                !name.contains(secret) && !sealed.contains(secret),
                "{secret}"
            );
        }
        assert!(sealed.starts_with("v1.k2."));
        assert_eq!(vault.get(&ALICE).await.unwrap(), Some(grant()));
        assert!(format!("{:?}", grant()).find("ALICE").is_none());
        // Another subject, issuer, tenant or service: another grant (none).
        for other in [
            GrantKey {
                subject: "bob",
                ..ALICE
            },
            GrantKey {
                issuer: "https://other.example",
                ..ALICE
            },
            GrantKey {
                tenant: "b",
                ..ALICE
            },
            GrantKey {
                service: "slack",
                ..ALICE
            },
        ] {
            assert_eq!(vault.get(&other).await.unwrap(), None);
        }
        // A value copied under bob's name does not open as bob's.
        let bobs = vault.keys.current().name(&GrantKey {
            subject: "bob",
            ..ALICE
        });
        store.0.lock().insert(bobs, sealed.clone());
        assert!(matches!(
            vault
                .get(&GrantKey {
                    subject: "bob",
                    ..ALICE
                })
                .await,
            Err(VaultError::Unreadable(_))
        ));
        assert!(vault.revoke(&ALICE).await.unwrap());
        assert_eq!(vault.get(&ALICE).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_rotated_key_still_opens_old_grants_and_they_move_to_the_new_key() {
        let store = Arc::new(Memory::default());
        let old = Vault::new(KeyRing::from_keys(&[("k1", [1; 32])]), store.clone());
        old.put(&ALICE, &grant()).await.unwrap();
        let rotated = Vault::new(
            KeyRing::from_keys(&[("k2", [2; 32]), ("k1", [1; 32])]),
            store.clone(),
        );
        assert_eq!(rotated.get(&ALICE).await.unwrap(), Some(grant()));
        let kept = store.0.lock().clone();
        assert_eq!(kept.len(), 1, "moved, not copied");
        assert!(kept.values().all(|v| v.starts_with("v1.k2.")));
        // Once k1 is removed, everything still opens.
        let new = Vault::new(KeyRing::from_keys(&[("k2", [2; 32])]), store.clone());
        assert_eq!(new.get(&ALICE).await.unwrap(), Some(grant()));
    }

    #[tokio::test]
    async fn a_wrong_or_missing_key_fails_closed() {
        let store = Arc::new(Memory::default());
        Vault::new(KeyRing::from_keys(&[("k1", [1; 32])]), store.clone())
            .put(&ALICE, &grant())
            .await
            .unwrap();
        // The same id with other material: refused, not treated as "no grant".
        let wrong = Vault::new(KeyRing::from_keys(&[("k1", [9; 32])]), store.clone());
        let name = wrong.keys.current().name(&ALICE);
        let sealed = store.0.lock().values().next().unwrap().clone();
        store.0.lock().insert(name, sealed);
        assert!(matches!(wrong.get(&ALICE).await, Err(VaultError::Unreadable(id)) if id == "k1"));
        // A value naming a key the ring does not have.
        let name = wrong.keys.current().name(&ALICE);
        store.0.lock().insert(name, "v1.k0.AAAA".into());
        let e = wrong.get(&ALICE).await.unwrap_err();
        assert!(matches!(e, VaultError::UnknownKey(_)), "{e}");
        // Missing or malformed key material is refused when the vault is configured.
        let config = |env: &str| VaultConfig {
            key_env: env.into(),
            key_id: "k1".into(),
            previous: vec![],
            dir: "vault".into(),
        };
        let missing = KeyRing::from_config(&config("PORTCULLIS_TEST_NO_SUCH_VAULT_KEY"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            missing.contains("PORTCULLIS_TEST_NO_SUCH_VAULT_KEY"),
            "{missing}"
        );
    }
}
