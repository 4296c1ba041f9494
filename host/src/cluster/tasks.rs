//! Every replica's MCP Tasks on Redis, so any replica answers `tasks/get` for any task, and
//! cancels and answers reach the replica running it.
//!
//! Keys: `<prefix>:task:<tenant>:<sha256 of the task id>`, holding the task (its owner as a
//! digest naming no one, its status, questions and result) sealed with AES-256-GCM under a
//! key derived from `server.state_key_env` and the key's name; prefixed `t|` once terminal,
//! `l|` before, so a terminal record (a cancel another replica recorded) is never overwritten
//! by a late write; expiring with the task's TTL. Cancels and answers for a task another
//! replica runs go out on `<prefix>:task-control`; the replica holding the task checks the
//! owner again and applies them; those messages are sealed the same way (answers are the
//! users' data) and stamped with when they were sent (a replayed one is ignored). A record
//! older than one a replica has read or written before (a sealed record a Redis writer kept
//! and wrote back) is not believed: a finished task does not read `working` again there.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::Cluster;
use super::seal::Sealer;
use crate::tasks::{Control, SharedDown, SharedTask, SharedTasks, TaskTable};

/// Writes a task unless the record there is already terminal.
static STORE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, 1, 2) == 't|' then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
",
    )
});

/// Counts one more unfinished task of an owner unless it has its cap already. KEYS: the
/// owner's unfinished tasks. ARGV: now (ms), cap, task digest, TTL (ms).
static START: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
",
    )
});

/// The key tasks and their control messages are sealed under.
fn sealer(state_key: &[u8]) -> Sealer {
    Sealer::new(b"portcullis shared tasks v1\0", state_key)
        .expect("a 32-byte AES-256-GCM key always builds")
}

/// One relayed cancel or answer.
#[derive(Serialize, Deserialize)]
struct Relayed {
    tenant: String,
    id: String,
    owner: String,
    control: Control,
    /// When it was sent (ms since the epoch): a sealed message replayed later is ignored
    /// (an old answer must not answer a later question).
    #[serde(default)]
    at: u64,
}

/// How old (or, by clock skew, how far ahead) a relayed control may be.
const FRESH_MS: u64 = 30_000;

/// The tasks of every replica, on Redis.
pub(super) struct RedisTasks {
    cluster: Cluster,
    sealer: Sealer,
    /// The newest state of each task this replica has read or written (Redis key → when it
    /// was updated, whether it was over, until when to remember): a record older than that,
    /// written back by a Redis writer, is not believed.
    seen: parking_lot::Mutex<HashMap<String, Seen>>,
}

/// The newest state of one task this replica knows.
#[derive(Clone, Copy)]
struct Seen {
    updated_ms: u64,
    terminal: bool,
    forget_at_ms: u64,
}

/// Most tasks remembered at once; past it, those whose TTL is over are forgotten first.
const SEEN_MAX: usize = 65_536;

impl RedisTasks {
    /// The key of `owner`'s (a task owner digest) unfinished tasks at `tenant`: keyed, so its
    /// name confirms no guessed owner.
    fn owner_key(&self, tenant: &str, owner: &str) -> String {
        let keyed = self
            .cluster
            .inner
            .tagger
            .digest(&[b"task owner", owner.as_bytes()]);
        self.cluster.inner.keys.owner_tasks(tenant, &keyed)
    }

    /// Whether `task`, read from `key`, is no older than what this replica has seen there;
    /// if so it becomes what has been seen.
    fn current(&self, key: &str, task: &SharedTask) -> bool {
        let now = super::seal::now_ms();
        let mut seen = self.seen.lock();
        if let Some(before) = seen.get(key)
            && before.forget_at_ms > now
            && (task.updated_ms < before.updated_ms
                || (before.terminal && !task.status.is_terminal()))
        {
            return false;
        }
        if seen.len() >= SEEN_MAX {
            seen.retain(|_, s| s.forget_at_ms > now);
            if seen.len() >= SEEN_MAX {
                seen.clear();
            }
        }
        seen.insert(
            key.to_string(),
            Seen {
                updated_ms: task.updated_ms,
                terminal: task.status.is_terminal(),
                forget_at_ms: now + u64::try_from(task.left().as_millis()).unwrap_or(u64::MAX),
            },
        );
        true
    }
}

impl Cluster {
    /// The shared task store, sealed under a key derived from `state_key` (the
    /// `requestState` key every replica shares).
    pub fn tasks(&self, state_key: &[u8]) -> Arc<dyn SharedTasks> {
        Arc::new(RedisTasks {
            cluster: self.clone(),
            sealer: sealer(state_key),
            seen: Default::default(),
        })
    }

    /// Apply the cancels and answers other replicas relay for the tasks of `tables` (by
    /// tenant) held here, until `shutdown`. `state_key` as for [`Cluster::tasks`].
    pub fn relay_task_controls(
        &self,
        tables: HashMap<String, Arc<TaskTable>>,
        state_key: &[u8],
        shutdown: &CancellationToken,
    ) {
        let (cluster, shutdown) = (self.clone(), shutdown.clone());
        let sealer = sealer(state_key);
        tokio::spawn(async move {
            let channel = cluster.inner.keys.task_control();
            let hear = cluster.hear(channel.clone(), "task cancels and answers", |payload| {
                let opened = sealer
                    .open(&channel, payload)
                    .map(|plain| serde_json::from_slice::<Relayed>(&plain));
                match opened {
                    None => tracing::warn!(
                        "ignored a task control message that did not decrypt (another server.state_key_env?)"
                    ),
                    Some(Err(e)) => tracing::warn!("ignored a malformed task control message: {e}"),
                    Some(Ok(r)) if r.at.abs_diff(super::seal::now_ms()) > FRESH_MS => {
                        tracing::warn!("ignored a task control message sent too long ago (replayed?)");
                    }
                    Some(Ok(r)) => {
                        if let Some(table) = tables.get(&r.tenant) {
                            table.control(&r.owner, &r.id, r.control);
                        }
                    }
                }
            });

            tokio::select! {
                () = shutdown.cancelled() => {}
                () = hear => {}
            }
        });
    }
}

impl SharedTasks for RedisTasks {
    fn start<'a>(
        &'a self,
        tenant: &'a str,
        owner: &'a str,
        id: &'a str,
        cap: usize,
        ttl: std::time::Duration,
    ) -> futures::future::BoxFuture<'a, Result<bool, SharedDown>> {
        Box::pin(async move {
            let mut invocation = START.key(self.owner_key(tenant, owner));
            invocation
                .arg(super::seal::now_ms())
                .arg(cap)
                .arg(super::id_digest(id))
                .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
            let started: i64 = self
                .cluster
                .script("start task", &invocation)
                .await
                .map_err(|e| SharedDown(e.to_string()))?;
            Ok(started == 1)
        })
    }

    fn store<'a>(
        &'a self,
        tenant: &'a str,
        task: &'a SharedTask,
    ) -> futures::future::BoxFuture<'a, ()> {
        Box::pin(async move {
            let left = task.left().as_millis();
            if left == 0 {
                return;
            }
            let key = self.cluster.inner.keys.task(tenant, &task.id);
            self.current(&key, task);
            let Some(sealed) = serde_json::to_vec(task)
                .ok()
                .and_then(|plain| self.sealer.seal(&key, plain))
            else {
                return;
            };
            let mark = if task.status.is_terminal() { "t" } else { "l" };
            let mut invocation = STORE.key(&key);
            invocation
                .arg(format!("{mark}|{sealed}"))
                .arg(u64::try_from(left).unwrap_or(u64::MAX));
            if let Err(e) = self.cluster.script::<i64>("store task", &invocation).await {
                tracing::warn!(
                    tenant,
                    "a task change reached only this replica (other replicas see the last one shared): {e}"
                );
            }
            if task.status.is_terminal() {
                // No longer counted against its owner's unfinished tasks.
                let mut cmd = redis::cmd("ZREM");
                cmd.arg(self.owner_key(tenant, &task.owner))
                    .arg(super::id_digest(&task.id));
                if let Err(e) = self.cluster.run::<()>("finish task", &cmd).await {
                    tracing::warn!(
                        tenant,
                        "a finished task counts against its owner until its TTL: {e}"
                    );
                }
            }
        })
    }

    fn load<'a>(
        &'a self,
        tenant: &'a str,
        id: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Option<SharedTask>, SharedDown>> {
        Box::pin(async move {
            let key = self.cluster.inner.keys.task(tenant, id);
            let mut cmd = redis::cmd("GET");
            cmd.arg(&key);
            let stored: Option<String> = self
                .cluster
                .run("load task", &cmd)
                .await
                .map_err(|e| SharedDown(e.to_string()))?;
            let Some(stored) = stored else {
                return Ok(None);
            };
            let sealed = stored.split_once('|').map_or("", |(_, s)| s);
            let task = self
                .sealer
                .open(&key, sealed)
                .and_then(|plain| serde_json::from_slice::<SharedTask>(&plain).ok());
            let Some(task) = task else {
                // Another state key, or altered in Redis: not trusted.
                tracing::warn!(
                    tenant,
                    "a shared task record did not decrypt (another server.state_key_env, or altered in Redis); treated as unknown"
                );
                return Ok(None);
            };
            if !self.current(&key, &task) {
                tracing::warn!(
                    tenant,
                    "a shared task record is older than one this replica has seen (written back in Redis); not believed"
                );
                return Err(SharedDown(
                    "the shared record of this task is older than one seen before".into(),
                ));
            }
            Ok(Some(task))
        })
    }

    fn send<'a>(
        &'a self,
        tenant: &'a str,
        id: &'a str,
        owner: &'a str,
        control: &'a Control,
    ) -> futures::future::BoxFuture<'a, ()> {
        Box::pin(async move {
            let message = Relayed {
                tenant: tenant.to_string(),
                id: id.to_string(),
                owner: owner.to_string(),
                control: control.clone(),
                at: super::seal::now_ms(),
            };
            let channel = self.cluster.inner.keys.task_control();
            let Some(payload) = serde_json::to_vec(&message)
                .ok()
                .and_then(|plain| self.sealer.seal(&channel, plain))
            else {
                return;
            };
            let mut cmd = redis::cmd("PUBLISH");
            cmd.arg(&channel).arg(payload);
            if let Err(e) = self.cluster.run::<()>("relay task control", &cmd).await {
                tracing::warn!(
                    tenant,
                    "a task cancel or answer did not reach the replica running the task: {e}"
                );
            }
        })
    }
}
