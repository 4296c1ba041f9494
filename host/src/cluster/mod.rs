//! Replicas sharing state on Redis (`[cluster]`).
//!
//! Owns: the connection to Redis (connected lazily, reconnecting, every command bounded by
//! `cluster.redis_timeout_ms`), this replica's identity and its announcement to the others
//! (`replicas`), the session directory on Redis (`directory`, the [`sessions::Directory`]
//! the transport routes by), the quotas every replica shares (`quotas`, the
//! [`tenancy::quota::SharedQuotas`](crate::tenancy::quota::SharedQuotas) the tenants admit
//! by), the downstream-token cache every replica shares, encrypted (`tokens`), the changes
//! plugins report, relayed between replicas (`changes`), every replica's MCP Tasks, encrypted,
//! with cancels and answers relayed to the replica running each (`tasks`), the introspection
//! budget (`introspection`), and the name of
//! every key
//! ([`Keys`]). Every failure to reach
//! Redis is counted (`portcullis.cluster.redis.errors`) and logged without the URL, which may
//! hold a password.
//!
//! Must not: serve or forward HTTP (`transport` forwards), decide who owns a session or how
//! many one may hold (`sessions`), or hold any caller's token.

mod changes;
mod consents;
mod directory;
mod grants;
mod introspection;
mod quotas;
mod replays;
mod replicas;
mod seal;
mod tasks;
mod tokens;

pub use consents::ConsentListener;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::config::{ClusterConfig, secret_from_env};
use crate::sessions;
use crate::telemetry::metrics;

pub use replicas::AdvertiseError;

/// Why cluster mode cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The Redis URL variable is unset or empty.
    #[error("cluster.redis_url_env: {0}")]
    Url(#[from] crate::config::EnvSecretError),
    /// The Redis URL does not parse (the URL itself is not repeated: it may hold a password).
    #[error(
        "cluster.redis_url_env: the value of {0} is not a Redis URL (redis://[user:password@]host:port[/db] or rediss://…)"
    )]
    BadUrl(String),
    /// The advertised URL is missing or not an internal address.
    #[error(transparent)]
    Advertise(#[from] AdvertiseError),
    /// The token cache key is too short.
    #[error("cluster.token_cache_key_env: the value of {0} must be at least 32 bytes")]
    ShortKey(String),
}

/// A Redis command that failed or timed out, as the rest of the gateway sees it.
#[derive(Debug, thiserror::Error)]
#[error("Redis {operation}: {detail}")]
pub struct RedisDown {
    operation: &'static str,
    detail: String,
}

/// The names of every key this gateway writes, under `cluster.key_prefix`.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    /// A replica's announcement (its advertised URL, expiring unless renewed).
    fn replica(&self, id: &str) -> String {
        format!("{}:replica:{id}", self.prefix)
    }

    /// Which replica holds session `id` of `tenant`. The id is hashed: whoever reads Redis
    /// learns no usable session id.
    fn session(&self, tenant: &str, id: &str) -> String {
        self.session_by_digest(tenant, &sessions::session_digest(id))
    }

    /// [`Keys::session`] for the session whose id has `digest`.
    fn session_by_digest(&self, tenant: &str, digest: &str) -> String {
        format!("{}:session:{tenant}:{digest}", self.prefix)
    }

    /// A caller's sessions on every replica (digests, scored by creation), and its rooms
    /// reserved for sessions being created (scored by expiry); `caller`: a keyed digest.
    fn caller_sessions(&self, tenant: &str, caller: &str) -> (String, String) {
        (
            format!("{}:caller-sessions:{tenant}:{caller}", self.prefix),
            format!("{}:caller-pending:{tenant}:{caller}", self.prefix),
        )
    }

    /// The pub/sub channel of sessions one replica evicted that another holds.
    fn session_control(&self) -> String {
        format!("{}:session-control", self.prefix)
    }

    /// A caller's rate bucket at `tenant` (`caller`: a digest naming no one).
    fn subject_bucket(&self, tenant: &str, caller: &str) -> String {
        format!("{}:quota:{tenant}:subject:{caller}", self.prefix)
    }

    /// The tenant's own rate bucket.
    fn tenant_bucket(&self, tenant: &str) -> String {
        format!("{}:quota:{tenant}:rate", self.prefix)
    }

    /// The leases of the tenant's requests in progress.
    fn in_progress(&self, tenant: &str) -> String {
        format!("{}:quota:{tenant}:in-progress", self.prefix)
    }

    /// A shared downstream token (`key`: the cache key, a digest).
    fn token(&self, key: &[u8]) -> String {
        format!("{}:token:{}", self.prefix, hex::encode(key))
    }

    /// A used consent-flow step (`id`: random).
    fn consent_spent(&self, id: &str) -> String {
        format!("{}:consent-spent:{id}", self.prefix)
    }

    /// A user's grant in the vault (`name`: the tenant and a keyed digest).
    fn grant(&self, name: &str) -> String {
        format!("{}:grant:{name}", self.prefix)
    }

    /// The claim of the replica obtaining that token.
    fn token_claim(&self, key: &[u8]) -> String {
        format!("{}:token-claim:{}", self.prefix, hex::encode(key))
    }

    /// The pub/sub channel of plugin-reported changes.
    fn changes(&self) -> String {
        format!("{}:changes", self.prefix)
    }

    /// Task `id` of `tenant` (a digest of the id: task ids are not in Redis in clear).
    fn task(&self, tenant: &str, id: &str) -> String {
        format!("{}:task:{tenant}:{}", self.prefix, id_digest(id))
    }

    /// An owner's unfinished tasks on every replica (task digests, scored by their TTL's
    /// end); `owner`: a keyed digest.
    fn owner_tasks(&self, tenant: &str, owner: &str) -> String {
        format!("{}:owner-tasks:{tenant}:{owner}", self.prefix)
    }

    /// A client network's introspection budget this minute (`network`: a keyed digest).
    fn introspection(&self, network: &str) -> String {
        format!("{}:introspect:{network}", self.prefix)
    }

    /// A spent DPoP proof (`digest`: a keyed digest of its key and `jti`).
    fn dpop_proof(&self, digest: &str) -> String {
        format!("{}:dpop:{digest}", self.prefix)
    }

    /// The pub/sub channel of cancels and answers for tasks another replica runs.
    fn task_control(&self) -> String {
        format!("{}:task-control", self.prefix)
    }

    /// The pub/sub channel of consents completed (sealed with the vault's key).
    fn consents(&self) -> String {
        format!("{}:consents", self.prefix)
    }
}

/// This replica's connection to the shared state.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    /// For connections of its own (pub/sub).
    client: redis::Client,
    redis: ConnectionManager,
    keys: Keys,
    /// This replica's id: random per process, so a restarted replica is a new one (the
    /// sessions of the old one are gone with it).
    replica: String,
    timeout: Duration,
    replicas: replicas::Announcement,
    /// Tags the records and messages replicas act on, and keys the digests in key names,
    /// under a key derived from `server.state_key_env` (a Redis writer without it can plant
    /// nothing a replica accepts).
    tagger: seal::Tagger,
    /// The directory records this replica wrote and has not released: key → (when, TTL).
    /// Written again when Redis comes back without them (restarted, or flushed). Entries
    /// older than their TTL are dropped: their records would have expired anyway.
    held: parking_lot::Mutex<std::collections::HashMap<String, (std::time::Instant, Duration)>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("replica", &self.inner.replica)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Join the cluster `config` describes: read the Redis URL, work out the advertised URL
    /// (`listen` is the fallback), and announce this replica until `shutdown` (then
    /// [`Cluster::leave`]); `state_key` (`server.state_key_env`, which every replica shares)
    /// authenticates what the replicas write for each other. Redis need not be reachable yet: commands fail, and are counted,
    /// until it is.
    pub fn join(
        config: &ClusterConfig,
        listen: SocketAddr,
        state_key: &[u8],
        shutdown: &CancellationToken,
    ) -> Result<Self, ClusterError> {
        let advertised = replicas::advertised_url(config, listen)?;
        let cluster = Self::connect(config, advertised.clone(), state_key)?;
        tracing::info!(replica = %cluster.inner.replica, advertised = %advertised, prefix = %config.key_prefix,
            "joined the cluster (shared state on Redis)");
        cluster.spawn_announcements(shutdown.clone());
        Ok(cluster)
    }

    /// The cluster's shared state, for a one-shot command (an operator's): connected to
    /// Redis, announcing nothing.
    pub fn connect_only(config: &ClusterConfig, state_key: &[u8]) -> Result<Self, ClusterError> {
        let nowhere = reqwest::Url::parse("http://127.0.0.1:9/").expect("a URL");
        Self::connect(config, nowhere, state_key)
    }

    fn connect(
        config: &ClusterConfig,
        advertised: reqwest::Url,
        state_key: &[u8],
    ) -> Result<Self, ClusterError> {
        let url = secret_from_env(&config.redis_url_env)?;
        let client = redis::Client::open(url.as_str())
            .map_err(|_| ClusterError::BadUrl(config.redis_url_env.clone()))?;
        let timeout = Duration::from_millis(config.redis_timeout_ms);
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let redis = ConnectionManager::new_lazy_with_config(client.clone(), manager)
            .map_err(|_| ClusterError::BadUrl(config.redis_url_env.clone()))?;
        let replica = hex::encode(rand::random::<[u8; 8]>());
        let cluster = Self {
            inner: Arc::new(Inner {
                client,
                redis,
                keys: Keys {
                    prefix: config.key_prefix.clone(),
                },
                replica: replica.clone(),
                timeout,
                replicas: replicas::Announcement::new(
                    advertised.clone(),
                    Duration::from_millis(config.replica_ttl_ms),
                ),
                tagger: seal::Tagger::new(b"portcullis cluster records v1\0", state_key),
                held: Default::default(),
            }),
        };
        Ok(cluster)
    }

    /// This replica's id.
    pub fn replica(&self) -> &str {
        &self.inner.replica
    }

    /// The session directory of this cluster, for sessions idle at most `session_idle`
    /// (a record outlives its last use by twice that, then expires); it hears other
    /// replicas' evictions until `shutdown`.
    pub fn directory(
        &self,
        session_idle: Duration,
        shutdown: &CancellationToken,
    ) -> Arc<dyn sessions::Directory> {
        directory::RedisDirectory::start(self.clone(), session_idle, shutdown)
    }

    /// A caller as a key part: a keyed digest of (issuer, kind of name, name), unambiguous,
    /// so whoever reads Redis cannot confirm a guessed user from a key's name.
    fn caller_digest(&self, caller: &crate::auth::CallerId) -> String {
        caller_digest(&self.inner.tagger, caller)
    }

    /// Run `cmd` on Redis within the command timeout; a failure is counted and described
    /// (never with the URL).
    async fn run<T: redis::FromRedisValue>(
        &self,
        operation: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T, RedisDown> {
        let mut conn = self.inner.redis.clone();
        self.bounded(operation, cmd.query_async::<T>(&mut conn))
            .await
    }

    /// Run a Lua script on Redis, as [`Cluster::run`] runs a command.
    async fn script<T: redis::FromRedisValue>(
        &self,
        operation: &'static str,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, RedisDown> {
        let mut conn = self.inner.redis.clone();
        self.bounded(operation, invocation.invoke_async::<T>(&mut conn))
            .await
    }

    async fn bounded<T>(
        &self,
        operation: &'static str,
        work: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RedisDown> {
        let detail = match tokio::time::timeout(self.inner.timeout, work).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => describe(&e),
            Err(_) => format!("no answer within {:?}", self.inner.timeout),
        };
        self.count_failure(operation);
        Err(RedisDown { operation, detail })
    }

    fn count_failure(&self, operation: &'static str) {
        metrics::get().redis_errors.add(
            1,
            &metrics::gateway_attrs(&[("portcullis.cluster.operation", operation)]),
        );
    }
}

/// How long a lost subscription waits before subscribing again.
const RESUBSCRIBE: Duration = Duration::from_secs(1);

impl Cluster {
    /// Subscribe to `channel` (again whenever the subscription is lost: Redis away, restarted)
    /// and hand each message's payload to `on`, forever. `what` names the messages in logs.
    async fn hear(&self, channel: String, what: &str, mut on: impl FnMut(&str)) {
        let mut subscribed = true;
        loop {
            let connected = tokio::time::timeout(self.inner.timeout, async {
                let mut pubsub = self.inner.client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            })
            .await;
            let pubsub = match connected {
                Ok(Ok(p)) => p,
                failed => {
                    if subscribed {
                        let why = match failed {
                            Ok(Err(e)) => describe(&e),
                            _ => "timed out".into(),
                        };
                        tracing::warn!(replica = %self.replica(),
                            "not hearing other replicas' {what} until Redis is back: {why}");
                    }
                    self.count_failure("subscribe");
                    subscribed = false;
                    tokio::time::sleep(RESUBSCRIBE).await;
                    continue;
                }
            };
            if !subscribed {
                tracing::info!(replica = %self.replica(), "hearing other replicas' {what} again");
            }
            let mut messages = pubsub.into_on_message();
            while let Some(message) = futures::StreamExt::next(&mut messages).await {
                if let Ok(payload) = message.get_payload::<String>() {
                    on(&payload);
                }
            }
            self.count_failure("subscribe");
            tracing::warn!(replica = %self.replica(),
                "the subscription to other replicas' {what} was lost; subscribing again");
            subscribed = false;
            tokio::time::sleep(RESUBSCRIBE).await;
        }
    }
}

/// An unguessable id (a task's) as key names and sets name it: SHA-256, hex.
fn id_digest(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// [`Cluster::caller_digest`] under `tagger`.
fn caller_digest(tagger: &seal::Tagger, caller: &crate::auth::CallerId) -> String {
    use crate::auth::CallerName;
    let issuer = caller.issuer.as_deref().unwrap_or("");
    let (kind, name) = match &caller.name {
        CallerName::Subject(s) => (b"s", s.as_str()),
        CallerName::Client(c) => (b"c", c.as_str()),
        CallerName::Anonymous => (b"a", ""),
    };
    tagger.digest(&[b"caller", issuer.as_bytes(), kind, name.as_bytes()])
}

/// A Redis error in words fit for a log line: its kind and code, no connection details.
fn describe(e: &redis::RedisError) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connection_refusal() {
        "connection refused".into()
    } else if e.is_connection_dropped() || e.is_io_error() {
        "connection lost".into()
    } else {
        match e.code() {
            Some(code) => format!("refused ({code})"),
            None => format!("{:?}", e.kind()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::auth::{CallerId, CallerName};

    #[test]
    fn callers_are_told_apart_by_issuer_and_kind_of_name_under_a_key() {
        let tagger = seal::Tagger::new(b"test\0", &[7; 32]);
        let id = |issuer: Option<&str>, name: CallerName| CallerId {
            issuer: issuer.map(Arc::from),
            name,
        };
        let digests = [
            id(Some("https://x"), CallerName::Subject("alice".into())),
            id(Some("https://y"), CallerName::Subject("alice".into())),
            id(Some("https://x"), CallerName::Client("alice".into())),
            id(Some("https://xa"), CallerName::Subject("lice".into())),
            id(None, CallerName::Subject("alice".into())),
        ]
        .map(|c| caller_digest(&tagger, &c));
        let distinct: std::collections::HashSet<_> = digests.iter().collect();
        assert_eq!(distinct.len(), digests.len(), "{digests:?}");
        let unkeyed = hex::encode(Sha256::digest(b"https://xalice"));
        assert!(!digests.contains(&unkeyed));
        let other = seal::Tagger::new(b"test\0", &[8; 32]);
        let alice = id(Some("https://x"), CallerName::Subject("alice".into()));
        assert_ne!(
            caller_digest(&tagger, &alice),
            caller_digest(&other, &alice),
            "keyed: without the cluster key a name cannot be confirmed"
        );
    }
}
