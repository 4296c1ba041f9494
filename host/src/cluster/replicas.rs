//! Which replicas are alive and where they are: each announces its advertised URL under its
//! id, renewed three times per `cluster.replica_ttl_ms`, withdrawn when it leaves. A replica
//! whose announcement expired is gone, and so are its sessions.
//!
//! Requests forwarded to a replica carry the caller's token, so an announcement is used only
//! if a replica of this cluster wrote it (tagged with the cluster key, bound to its key), it is
//! within its validity (each carries when it runs out, so one kept or written back in Redis
//! past its TTL is ignored), and its URL is an IP literal on an internal network (loopback,
//! private, shared, unique-local): a record planted in Redis sends no token anywhere.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::{Cluster, RedisDown};
use crate::config::ClusterConfig;

/// How long a looked-up replica URL (or its absence) is reused before asking Redis again.
const PEER_CACHE: Duration = Duration::from_secs(1);

/// The advertised URL is missing or unusable.
#[derive(Debug, thiserror::Error)]
pub enum AdvertiseError {
    /// Nothing says where this replica is reachable.
    #[error(
        "cluster.advertise_url: not set, {0} is not set either, and server.listen has no concrete address; set one to the URL other replicas reach this one at (e.g. http://10.1.2.3:8080)"
    )]
    Missing(String),
    /// The URL is not a base URL on an internal IP address.
    #[error(
        "cluster.advertise_url: `{0}` must be http://<internal IP literal>:<port> (loopback, private, shared or unique-local): other replicas send callers' tokens there"
    )]
    NotInternal(String),
}

/// Where this replica is reachable, from `[cluster]` (or its variable), else the listener.
pub(super) fn advertised_url(
    config: &ClusterConfig,
    listen: SocketAddr,
) -> Result<reqwest::Url, AdvertiseError> {
    let text = config
        .advertise_url
        .clone()
        .or_else(|| {
            std::env::var(&config.advertise_url_env)
                .ok()
                .filter(|v| !v.is_empty())
        })
        .or_else(|| (!listen.ip().is_unspecified()).then(|| format!("http://{listen}")))
        .ok_or_else(|| AdvertiseError::Missing(config.advertise_url_env.clone()))?;
    peer_url(&text).ok_or(AdvertiseError::NotInternal(text))
}

/// `text` as a replica's base URL, if it is one this replica may send requests to.
pub(super) fn peer_url(text: &str) -> Option<reqwest::Url> {
    let url = reqwest::Url::parse(text).ok()?;
    let host = url.host_str()?;
    let ip: IpAddr = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .parse()
        .ok()?;
    let plain = url.scheme() == "http"
        && url.path() == "/"
        && url.query().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    (plain && crate::net::internal(ip)).then_some(url)
}

/// How far another replica's clock may be ahead of this one's (announcements' validity).
const CLOCK_SKEW_MS: u64 = 5_000;

impl Cluster {
    /// The URL replica `id`'s announcement `record` (stored under `key`) names, if a replica
    /// of this cluster wrote it, it has not run out, and the URL is one to send tokens to.
    fn announced_url(&self, id: &str, key: &str, record: &str) -> Option<reqwest::Url> {
        let Some(value) = self.inner.tagger.verify(key, record) else {
            tracing::warn!(replica = %crate::telemetry::untrusted(id),
                "ignored a replica announcement without this cluster's tag (written to Redis by something else, or by a replica with another server.state_key_env)");
            return None;
        };
        let (text, until) = value.rsplit_once(' ')?;
        let until: u64 = until.parse().ok()?;
        if until + CLOCK_SKEW_MS < super::seal::now_ms() {
            tracing::warn!(replica = %crate::telemetry::untrusted(id),
                "ignored a replica announcement past its validity (kept or written back in Redis)");
            return None;
        }
        let url = peer_url(text);
        if url.is_none() {
            tracing::warn!(replica = %crate::telemetry::untrusted(id), announced = %crate::telemetry::untrusted(text),
                "ignored a replica announcing a URL that is not an internal IP address");
        }
        url
    }
}

/// This replica's announcement, and what it knows of the others.
pub(super) struct Announcement {
    advertised: reqwest::Url,
    ttl: Duration,
    /// Replica id → its URL (`None`: gone), with when it was looked up.
    peers: Mutex<HashMap<String, (Option<reqwest::Url>, Instant)>>,
}

impl Announcement {
    pub(super) fn new(advertised: reqwest::Url, ttl: Duration) -> Self {
        Self {
            advertised,
            ttl,
            peers: Mutex::default(),
        }
    }
}

impl Cluster {
    /// Announce this replica now and every third of the TTL until `shutdown`.
    pub(super) fn spawn_announcements(&self, shutdown: CancellationToken) {
        let cluster = self.clone();
        tokio::spawn(async move {
            let every = cluster.inner.replicas.ttl / 3;
            let mut reachable = true;
            let mut first = true;
            loop {
                let announced = cluster.announce().await;
                match (&announced, reachable) {
                    (Err(e), true) => tracing::warn!(replica = %cluster.replica(),
                        "this replica cannot announce itself; other replicas will answer 404 for its sessions once its record expires: {e}"),
                    (Ok(_), false) => tracing::info!(replica = %cluster.replica(),
                        "this replica announces itself again"),
                    _ => {}
                }
                // Its own announcement was gone: so may be the records of its sessions.
                if matches!(announced, Ok(false)) && !first {
                    cluster.rewrite_records().await;
                }
                reachable = announced.is_ok();
                first = false;
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                }
            }
        });
    }

    /// Announce this replica for another TTL; whether its announcement was still there.
    async fn announce(&self) -> Result<bool, RedisDown> {
        let inner = &self.inner;
        let key = inner.keys.replica(&inner.replica);
        // Valid until the record would have expired: one written back later, or kept by a
        // Redis writer past its TTL, names an address that may belong to something else now.
        let until = super::seal::now_ms() + inner.replicas.ttl.as_millis() as u64;
        let value = format!("{} {until}", inner.replicas.advertised);
        let mut cmd = redis::cmd("SET");
        cmd.arg(&key)
            .arg(inner.tagger.sign(&key, &value))
            .arg("PX")
            .arg(inner.replicas.ttl.as_millis() as u64)
            .arg("GET");
        let before: Option<String> = self.run("announce", &cmd).await?;
        Ok(before.is_some())
    }

    /// Leave the cluster: this replica's announcement is withdrawn, so its sessions answer
    /// 404 on every other replica from now on (best effort: it expires anyway).
    pub async fn leave(&self) {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.inner.keys.replica(&self.inner.replica));
        match self.run::<()>("withdraw", &cmd).await {
            Ok(()) => tracing::info!(replica = %self.replica(), "left the cluster"),
            Err(e) => tracing::warn!(replica = %self.replica(),
                "leaving the cluster: the announcement could not be withdrawn and expires on its own: {e}"),
        }
    }

    /// Replica `id`'s URL, or `None` when it is gone (or announces a URL this replica may
    /// not send to).
    pub(super) async fn peer(&self, id: &str) -> Result<Option<reqwest::Url>, RedisDown> {
        let replicas = &self.inner.replicas;
        if let Some((url, at)) = replicas.peers.lock().get(id)
            && at.elapsed() < PEER_CACHE
        {
            return Ok(url.clone());
        }
        let key = self.inner.keys.replica(id);
        let mut cmd = redis::cmd("GET");
        cmd.arg(&key);
        let announced: Option<String> = self.run("locate replica", &cmd).await?;
        let url = announced.and_then(|record| self.announced_url(id, &key, &record));
        let mut peers = replicas.peers.lock();
        peers.retain(|_, (_, at)| at.elapsed() < PEER_CACHE);
        peers.insert(id.to_string(), (url.clone(), Instant::now()));
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_internal_ip_literals_are_replica_urls() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://10.1.2.3:8080/",
            "http://[fd00::1]:80",
        ] {
            assert!(peer_url(ok).is_some(), "{ok}");
        }
        for bad in [
            "http://8.8.8.8:8080",
            "http://gateway.internal:8080",
            "https://10.0.0.1",
            "http://169.254.169.254",
            "http://10.0.0.1/mcp",
            "http://user:pw@10.0.0.1",
            "not a url",
        ] {
            assert!(peer_url(bad).is_none(), "{bad}");
        }
    }
}
