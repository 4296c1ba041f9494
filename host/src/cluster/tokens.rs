//! The downstream-token cache every replica shares, on Redis, encrypted: AES-256-GCM under a
//! key from `cluster.token_cache_key_env`, a random nonce per entry, and the entry's key as
//! associated data (an entry copied under another key does not open). The plaintext is the
//! token and when it stops being usable; Redis expires the entry then too.
//!
//! Keys: `<prefix>:token:<hex cache key>` (the cache key is a digest: no tenant, subject or
//! token in clear) and `<prefix>:token-claim:<hex cache key>` while one replica obtains it.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::seal::Sealer;
use super::{Cluster, ClusterError};
use crate::config::ClusterConfig;
use crate::downstream::{SharedDown, SharedTokens, TokenKey};
use crate::sandbox::BoxFuture;

/// Shortest accepted key material.
const MIN_KEY_BYTES: usize = 32;

/// Deletes the claim only if this replica still holds it.
static UNCLAIM: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
",
    )
});

/// The shared, encrypted token cache.
pub(super) struct TokenVault {
    cluster: Cluster,
    sealer: Sealer,
}

/// The token cache's key, from `material`.
fn sealer(material: &[u8]) -> Option<Sealer> {
    Sealer::new(b"portcullis shared token cache v1\0", material)
}

/// `token`, usable until `until_ms`, sealed for `entry`.
fn seal(sealer: &Sealer, entry: &str, token: &str, until_ms: u64) -> Option<String> {
    let mut data = until_ms.to_be_bytes().to_vec();
    data.extend_from_slice(token.as_bytes());
    sealer.seal(entry, data)
}

/// The token and its end of use in `sealed`, if it opens for `entry`.
fn open(sealer: &Sealer, entry: &str, sealed: &str) -> Option<(String, u64)> {
    let plain = sealer.open(entry, sealed)?;
    let (until, token) = plain.split_at_checked(8)?;
    let until = u64::from_be_bytes(until.try_into().ok()?);
    Some((String::from_utf8(token.to_vec()).ok()?, until))
}

impl Cluster {
    /// The shared token cache, keyed from `config.token_cache_key_env`.
    pub fn tokens(&self, config: &ClusterConfig) -> Result<Arc<dyn SharedTokens>, ClusterError> {
        let var = &config.token_cache_key_env;
        let material = crate::config::secret_from_env(var)?;
        let sealer = sealer(material.as_bytes())
            .filter(|_| material.len() >= MIN_KEY_BYTES)
            .ok_or_else(|| ClusterError::ShortKey(var.clone()))?;
        Ok(Arc::new(TokenVault {
            cluster: self.clone(),
            sealer,
        }))
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl TokenVault {
    fn entry(&self, key: &TokenKey) -> String {
        self.cluster.inner.keys.token(key)
    }

    fn claim_key(&self, key: &TokenKey) -> String {
        self.cluster.inner.keys.token_claim(key)
    }
}

fn down(e: super::RedisDown) -> SharedDown {
    SharedDown(e.to_string())
}

impl SharedTokens for TokenVault {
    fn get<'a>(
        &'a self,
        key: &'a TokenKey,
    ) -> BoxFuture<'a, Result<Option<(String, Duration)>, SharedDown>> {
        Box::pin(async move {
            let entry = self.entry(key);
            let mut cmd = redis::cmd("GET");
            cmd.arg(&entry);
            let sealed: Option<String> = self.cluster.run("get token", &cmd).await.map_err(down)?;
            let Some(sealed) = sealed else {
                return Ok(None);
            };
            let Some((token, until)) = open(&self.sealer, &entry, &sealed) else {
                // Another key (rotated), or tampered with: not usable, and not trusted.
                tracing::warn!(
                    "a shared token cache entry did not decrypt (another cluster.token_cache_key_env, or altered in Redis); obtaining a new token"
                );
                return Ok(None);
            };
            let left = until.saturating_sub(now_ms());
            Ok((left > 0).then(|| (token, Duration::from_millis(left))))
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a TokenKey,
        token: &'a str,
        usable: Duration,
    ) -> BoxFuture<'a, Result<(), SharedDown>> {
        Box::pin(async move {
            let ms = usable.as_millis() as u64;
            if ms == 0 {
                return Ok(());
            }
            let entry = self.entry(key);
            let Some(sealed) = seal(&self.sealer, &entry, token, now_ms() + ms) else {
                return Err(SharedDown("sealing the token failed".into()));
            };
            let mut cmd = redis::cmd("SET");
            cmd.arg(&entry).arg(sealed).arg("PX").arg(ms);
            self.cluster
                .run::<()>("put token", &cmd)
                .await
                .map_err(down)
        })
    }

    fn evict<'a>(&'a self, key: &'a TokenKey) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let mut cmd = redis::cmd("DEL");
            cmd.arg(self.entry(key));
            if let Err(e) = self.cluster.run::<()>("evict token", &cmd).await {
                tracing::warn!("a refused token stays in the shared cache until it expires: {e}");
            }
        })
    }

    fn claim<'a>(
        &'a self,
        key: &'a TokenKey,
        hold: Duration,
    ) -> BoxFuture<'a, Result<bool, SharedDown>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.claim_key(key))
                .arg(self.cluster.replica())
                .arg("NX")
                .arg("PX")
                .arg(hold.as_millis().max(1) as u64);
            let set: Option<String> = self.cluster.run("claim token", &cmd).await.map_err(down)?;
            Ok(set.is_some())
        })
    }

    fn unclaim<'a>(&'a self, key: &'a TokenKey) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let claim = self.claim_key(key);
            let mut invocation = UNCLAIM.prepare_invoke();
            invocation.key(&claim).arg(self.cluster.replica());
            // Failing, the claim runs out on its own.
            let _ = self
                .cluster
                .script::<u8>("unclaim token", &invocation)
                .await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_opens_only_under_its_key_and_under_its_own_name() {
        let one = sealer(b"0123456789abcdef0123456789abcdef").unwrap();
        let other = sealer(b"0123456789abcdef0123456789abcdeX").unwrap();
        let sealed = seal(&one, "p:token:aa", "the-token", 42).unwrap();
        assert!(!sealed.contains("the-token"));
        assert_eq!(
            open(&one, "p:token:aa", &sealed),
            Some(("the-token".to_string(), 42))
        );
        assert_eq!(open(&other, "p:token:aa", &sealed), None, "another key");
        assert_eq!(
            open(&one, "p:token:bb", &sealed),
            None,
            "copied under another entry"
        );
        let mut tampered = sealed.into_bytes();
        tampered[20] ^= 1;
        assert_eq!(
            open(&one, "p:token:aa", &String::from_utf8(tampered).unwrap()),
            None,
            "altered"
        );
        assert_ne!(
            seal(&one, "p:token:aa", "the-token", 42),
            seal(&one, "p:token:aa", "the-token", 42),
            "a fresh nonce each time"
        );
    }
}
