//! `[audit]`: the record of every decision (#33).

use std::path::PathBuf;

use serde::Deserialize;

/// `[audit]`: where the record of every decision goes. Off unless `file` or `stdout` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// The audit file (JSON lines, hash-chained, with signed checkpoints), relative to this
    /// file. One per replica: give each its own.
    pub file: Option<PathBuf>,
    /// Also write each event to standard output (one JSON line).
    pub stdout: bool,
    /// The environment variable holding the checkpoint key (required with `file`).
    pub key_env: String,
    /// A signed checkpoint after this many lines. Default 1000.
    pub checkpoint_lines: u64,
    /// A signed checkpoint at least this often while events arrive, in seconds. Default 10.
    pub checkpoint_secs: u64,
    /// Rotate the file once it is this large, in bytes. Default 100 MiB.
    pub max_bytes: u64,
    /// Rotated files kept (`file.1` … `file.N`). Default 10.
    pub keep: usize,
    /// Also export each event as an OpenTelemetry log record, through `[telemetry]`'s OTLP
    /// exporter (its endpoint, protocol and headers; `/v1/logs`).
    pub otlp: bool,
    /// The most of a call's arguments recorded (for tools a tenant lists in `[tenant.audit]
    /// arguments`), in bytes of JSON. Default 2048.
    pub max_argument_bytes: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            file: None,
            stdout: false,
            key_env: "PORTCULLIS_AUDIT_KEY".into(),
            checkpoint_lines: 1000,
            checkpoint_secs: 10,
            max_bytes: 100 * 1024 * 1024,
            keep: 10,
            otlp: false,
            max_argument_bytes: 2048,
        }
    }
}
