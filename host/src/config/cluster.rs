//! `[cluster]`: several gateway replicas behind one load balancer, sharing state on Redis.
//! Without the section nothing is shared and nothing changes.

use serde::Deserialize;

/// `[cluster]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Environment variable holding the Redis URL: `redis://[user:password@]host:port[/db]`,
    /// or `rediss://…` for TLS (the system's trusted roots). Default `PORTCULLIS_REDIS_URL`.
    pub redis_url_env: String,
    /// Prefix of every key this gateway writes, so several deployments can share one Redis.
    /// Default `portcullis`.
    pub key_prefix: String,
    /// The base URL the other replicas reach this one at, e.g. `http://10.1.2.3:8080` (a
    /// literal internal address: loopback, private, shared or unique-local). Default: the
    /// environment variable named by `advertise_url_env`, else `http://<server.listen>` when
    /// the listener has a concrete address.
    pub advertise_url: Option<String>,
    /// Environment variable with the advertised URL (Kubernetes: `http://$(POD_IP):8080`).
    /// Default `PORTCULLIS_ADVERTISE_URL`.
    pub advertise_url_env: String,
    /// How long a replica that stopped announcing itself still counts as alive, in ms; its
    /// sessions answer 404 after that. Default 10000.
    pub replica_ttl_ms: u64,
    /// Longest wait for one Redis command before it counts as failed, in ms. Default 500.
    pub redis_timeout_ms: u64,
    /// What quotas do while Redis cannot be reached: `"local"` (default) enforces each
    /// replica's own buckets and caps, so N replicas admit at most N times the configured
    /// rate; `"refuse"` answers every request a quota covers with 503 + `Retry-After`.
    /// Either way each fallback is counted (`portcullis.cluster.redis.errors`) and logged.
    pub quotas_without_redis: QuotasWithoutRedis,
    /// Environment variable holding the key (at least 32 bytes) the tokens this gateway
    /// obtains downstream are encrypted with in Redis (AES-256-GCM), so every replica can use
    /// the ones another obtained. Required when the gateway has an OAuth client (`[exchange]`
    /// or `[auth.issuer.exchange]`). Default `PORTCULLIS_TOKEN_CACHE_KEY`.
    pub token_cache_key_env: String,
}

/// `cluster.quotas_without_redis`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum QuotasWithoutRedis {
    /// Each replica's own limits (fail open, bounded).
    #[default]
    Local,
    /// 503 for every request a quota covers (fail closed).
    Refuse,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            redis_url_env: "PORTCULLIS_REDIS_URL".into(),
            key_prefix: "portcullis".into(),
            advertise_url: None,
            advertise_url_env: "PORTCULLIS_ADVERTISE_URL".into(),
            replica_ttl_ms: 10_000,
            redis_timeout_ms: 500,
            quotas_without_redis: QuotasWithoutRedis::Local,
            token_cache_key_env: "PORTCULLIS_TOKEN_CACHE_KEY".into(),
        }
    }
}
