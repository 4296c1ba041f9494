//! `[tasks]`: tool calls that run as MCP Tasks (`io.modelcontextprotocol/tasks`): how long a
//! task and its result are kept, how many one caller may have, and how long one may run.

use serde::Deserialize;

/// `[tasks]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TasksConfig {
    /// How long a task exists, from its creation, in ms (its `ttlMs`): a result is kept until
    /// then, a task still running then is cancelled. Default 900000 (15 minutes).
    pub ttl_ms: u64,
    /// Longest a task's plugin call may run, in ms (instead of `limits.deadline_ms`). At most
    /// `ttl_ms`. Default 600000 (10 minutes).
    pub deadline_ms: u64,
    /// Unfinished tasks one caller (tenant, issuer, subject) may have at once; one more is
    /// refused with an error saying so. Default 16.
    pub max_per_subject: usize,
    /// Tasks (finished ones included, until their TTL) one tenant keeps at once. Default 4096.
    pub max_per_tenant: usize,
    /// The polling interval suggested to clients, in ms (`pollIntervalMs`). Default 1000.
    pub poll_interval_ms: u64,
    /// For `before-task` tools: how long a round may run in the request before it becomes a
    /// task, in ms. Default 1000.
    pub inline_ms: u64,
}

impl Default for TasksConfig {
    fn default() -> Self {
        Self {
            ttl_ms: 900_000,
            deadline_ms: 600_000,
            max_per_subject: 16,
            max_per_tenant: 4096,
            poll_interval_ms: 1000,
            inline_ms: 1000,
        }
    }
}
