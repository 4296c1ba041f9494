//! The audit file: events as JSON lines, hash-chained and checkpointed (`audit::chain`),
//! written by a thread of its own, rotated by size.
//!
//! Owns: the writer thread and its bounded queue (a full queue drops the event and the file
//! says how many were dropped: the loss is on the record, the request path never waits), the
//! checkpoint cadence (every `checkpoint_lines` lines or `checkpoint_secs` seconds, and a
//! final one at rotation and at stop), rotation (`file` → `file.1` → … up to `keep`, the new
//! file's first line chained to the old file's last), and flushing. Must not: decide what is
//! recorded (`audit`), or hold a token.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::chain::{Chain, GENESIS};

/// How the file is written.
#[derive(Debug, Clone)]
pub struct FileSettings {
    /// The file.
    pub path: PathBuf,
    /// The checkpoint key.
    pub key: Vec<u8>,
    /// A checkpoint after this many lines.
    pub checkpoint_lines: u64,
    /// A checkpoint at least this often while events arrive.
    pub checkpoint_every: Duration,
    /// Rotate once the file is this large.
    pub max_bytes: u64,
    /// Rotated files kept.
    pub keep: usize,
    /// Events queued for the writer at most.
    pub queue: usize,
}

enum Message {
    Event(Map<String, Value>),
    /// Write the final checkpoint, flush, and answer.
    Stop(SyncSender<()>),
}

/// The file sink: hand it events; it writes them in order.
pub struct FileSink {
    queue: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for FileSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSink").finish_non_exhaustive()
    }
}

impl FileSink {
    /// Open (or continue after) `settings.path` and start the writer. A file that exists is
    /// rotated first, so each file is one writer's, from its first line to its final
    /// checkpoint.
    pub fn open(settings: FileSettings) -> std::io::Result<Self> {
        let follows = if settings.path.exists() {
            let head = last_line_digest(&settings.path)?;
            rotate(&settings.path, settings.keep)?;
            head
        } else {
            GENESIS.to_string()
        };
        let file = create(&settings.path)?;
        let (queue, rx) = sync_channel(settings.queue);
        let dropped = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            file,
            written: 0,
            chain: Chain::after(follows),
            since_checkpoint: 0,
            last_checkpoint: Instant::now(),
            dropped: dropped.clone(),
            settings,
        };
        std::thread::Builder::new()
            .name("portcullis-audit".into())
            .spawn(move || writer.run(&rx))?;
        Ok(Self { queue, dropped })
    }
}

impl super::Sink for FileSink {
    /// Queue `fields` (an event, without `seq` and `prev`). Never waits: when the writer is
    /// behind by a whole queue the event is counted as dropped, and the file says so.
    fn write(&self, fields: &Map<String, Value>) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.queue.try_send(Message::Event(fields.clone()))
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Write the final checkpoint and flush; waits for the writer (at most `bound`).
    fn stop(&self, bound: Duration) {
        let (done, wait) = sync_channel(1);
        if self.queue.send(Message::Stop(done)).is_ok() {
            let _ = wait.recv_timeout(bound);
        }
    }
}

struct Writer {
    file: File,
    written: u64,
    chain: Chain,
    since_checkpoint: u64,
    last_checkpoint: Instant,
    dropped: Arc<AtomicU64>,
    settings: FileSettings,
}

impl Writer {
    fn run(mut self, rx: &Receiver<Message>) {
        loop {
            let message = rx.recv_timeout(self.settings.checkpoint_every);
            match message {
                Ok(Message::Event(fields)) => {
                    self.note_dropped();
                    self.append(fields);
                    if self.since_checkpoint >= self.settings.checkpoint_lines
                        || self.last_checkpoint.elapsed() >= self.settings.checkpoint_every
                    {
                        self.checkpoint(false);
                    }
                }
                Ok(Message::Stop(done)) => {
                    self.note_dropped();
                    self.checkpoint(true);
                    let _ = done.send(());
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {
                    if self.since_checkpoint > 0 {
                        self.checkpoint(false);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.checkpoint(true);
                    return;
                }
            }
        }
    }

    /// Record events dropped since the last line, if any were.
    fn note_dropped(&mut self) {
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let mut fields = Map::new();
            fields.insert("at".into(), json!(super::now()));
            fields.insert("event".into(), json!("dropped"));
            fields.insert("count".into(), json!(dropped));
            self.append(fields);
        }
    }

    fn append(&mut self, fields: Map<String, Value>) {
        let line = self.chain.line(fields);
        self.put(&line);
        self.since_checkpoint += 1;
    }

    fn checkpoint(&mut self, last: bool) {
        let line = self
            .chain
            .checkpoint(&self.settings.key, &super::now(), last);
        self.put(&line);
        let _ = self.file.flush();
        let _ = self.file.sync_data();
        self.since_checkpoint = 0;
        self.last_checkpoint = Instant::now();
        if !last && self.written >= self.settings.max_bytes {
            self.rotate();
        }
    }

    /// End this file with its final checkpoint and go on in a new one, chained to it.
    fn rotate(&mut self) {
        let line = self
            .chain
            .checkpoint(&self.settings.key, &super::now(), true);
        self.put(&line);
        let _ = self.file.sync_data();
        let head = self.chain.head().to_string();
        let opened = rotate(&self.settings.path, self.settings.keep)
            .and_then(|()| create(&self.settings.path));
        match opened {
            Ok(file) => {
                self.file = file;
                self.written = 0;
                self.chain = Chain::after(head);
            }
            Err(e) => tracing::error!(
                file = %self.settings.path.display(),
                "the audit file could not be rotated, writing on: {e}"
            ),
        }
    }

    fn put(&mut self, line: &str) {
        let result = self
            .file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.write_all(b"\n"));
        match result {
            Ok(()) => self.written += line.len() as u64 + 1,
            Err(e) => tracing::error!(
                file = %self.settings.path.display(),
                "an audit line could not be written: {e}"
            ),
        }
    }
}

fn create(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create_new(true).append(true).open(path)
}

/// `path` → `path.1`, `path.1` → `path.2`, … keeping `keep` rotated files.
fn rotate(path: &Path, keep: usize) -> std::io::Result<()> {
    let numbered = |n: usize| PathBuf::from(format!("{}.{n}", path.display()));
    if keep == 0 {
        return std::fs::remove_file(path);
    }
    let _ = std::fs::remove_file(numbered(keep));
    for n in (1..keep).rev() {
        if numbered(n).exists() {
            std::fs::rename(numbered(n), numbered(n + 1))?;
        }
    }
    std::fs::rename(path, numbered(1))
}

/// The digest of the last line of `path` (what the next file's first line follows).
fn last_line_digest(path: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .last()
        .map_or_else(|| GENESIS.to_string(), super::chain::digest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Sink as _;
    use crate::audit::chain::{digest, verify};

    fn settings(dir: &Path, max_bytes: u64) -> FileSettings {
        FileSettings {
            path: dir.join("audit.jsonl"),
            key: b"k".to_vec(),
            checkpoint_lines: 4,
            checkpoint_every: Duration::from_secs(60),
            max_bytes,
            keep: 3,
            queue: 1000,
        }
    }

    fn event(n: usize) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("event".into(), json!("request"));
        m.insert("n".into(), json!(n));
        m
    }

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "portcullis-audit-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_stopped_file_verifies_and_a_restart_chains_to_it() {
        let d = dir();
        let sink = FileSink::open(settings(&d, u64::MAX)).unwrap();
        for n in 0..10 {
            sink.write(&event(n));
        }
        sink.stop(Duration::from_secs(5));
        let first = std::fs::read_to_string(d.join("audit.jsonl")).unwrap();
        let v = verify(&first, b"k", false).unwrap();
        assert_eq!(
            v.lines,
            10 + 2 + 1,
            "ten events, two checkpoints, the final one"
        );
        // A second writer rotates the first file away and chains its first line to it.
        let sink = FileSink::open(settings(&d, u64::MAX)).unwrap();
        sink.write(&event(10));
        sink.stop(Duration::from_secs(5));
        let second = std::fs::read_to_string(d.join("audit.jsonl")).unwrap();
        let v2 = verify(&second, b"k", false).unwrap();
        assert_eq!(v2.follows, digest(first.lines().last().unwrap()));
        assert_eq!(
            std::fs::read_to_string(d.join("audit.jsonl.1")).unwrap(),
            first
        );
    }

    #[test]
    fn rotation_by_size_keeps_every_file_whole_and_chained() {
        let d = dir();
        let sink = FileSink::open(settings(&d, 600)).unwrap();
        for n in 0..40 {
            sink.write(&event(n));
        }
        sink.stop(Duration::from_secs(5));
        let mut follows = None;
        for name in [
            "audit.jsonl.3",
            "audit.jsonl.2",
            "audit.jsonl.1",
            "audit.jsonl",
        ] {
            let text = std::fs::read_to_string(d.join(name)).unwrap();
            let v = verify(&text, b"k", false).unwrap_or_else(|e| panic!("{name}: {e}"));
            if let Some(head) = follows {
                assert_eq!(v.follows, head, "{name} follows the file before");
            }
            follows = Some(v.head);
        }
    }
}
