//! Spent DPoP proofs every replica shares (`auth::SharedReplays`): one key per proof,
//! `<prefix>:dpop:<keyed digest>`, set only if absent and expiring when the proof would no
//! longer be accepted anyway, so a proof replayed to another replica is refused there too.

use futures::future::BoxFuture;

use super::Cluster;
use crate::auth::SharedReplays;

impl Cluster {
    /// The DPoP replay cache shared through this cluster.
    pub fn dpop_replays(&self) -> std::sync::Arc<dyn SharedReplays> {
        std::sync::Arc::new(Replays(self.clone()))
    }
}

struct Replays(Cluster);

impl SharedReplays for Replays {
    fn first_use(&self, key: [u8; 16], until: u64) -> BoxFuture<'_, Result<bool, String>> {
        Box::pin(async move {
            let inner = &self.0.inner;
            let digest = inner.tagger.digest(&[b"dpop proof", &key]);
            let now = jsonwebtoken::get_current_timestamp();
            // At least a second: a proof at the edge of its window is still recorded.
            let ttl_ms = until.saturating_sub(now).max(1) * 1000;
            let mut cmd = redis::cmd("SET");
            cmd.arg(inner.keys.dpop_proof(&digest))
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms);
            let set: Option<String> = self
                .0
                .run("record a DPoP proof", &cmd)
                .await
                .map_err(|e| e.to_string())?;
            Ok(set.is_some())
        })
    }
}
