//! MCP Tasks (`io.modelcontextprotocol/tasks`): tool calls that outlive their request. The
//! client gets a task id at once, polls for the task's status and result, answers its
//! questions and may cancel it.
//!
//! Owns: one tenant's [`TaskTable`] — which tasks exist, whose each is (tenant, issuer,
//! subject: a task is visible to its creator only, and every other caller gets the same
//! "not found"), their status, questions, answers and results, and the bounds that keep them
//! finite (a TTL from creation, a cap on unfinished tasks per caller and on tasks per
//! tenant). The running side holds a [`TaskHandle`]; cancelling a task fires its
//! cancellation token, which stops its plugin instance. With replicas ([`SharedTasks`],
//! `cluster` implements it on Redis) every change is also written to the shared store, so any
//! replica answers for any task, and another replica's cancel or answers reach the replica
//! running it ([`Control`]). Must not: run plugins or speak the protocol (`mcp` does both and
//! converts these values to the wire), decide who may call a tool
//! (`authz`, at creation), or know how the shared store works.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::auth::{CallerId, CallerName, Principal};
use crate::config::TasksConfig;

/// How a tenant's tasks are bounded.
#[derive(Clone, Debug)]
pub struct TaskSettings {
    /// A task's lifetime from creation.
    pub ttl: Duration,
    /// How long a task's plugin call may run.
    pub deadline: Duration,
    /// Unfinished tasks per caller.
    pub max_per_subject: usize,
    /// Tasks per tenant, finished ones included.
    pub max_per_tenant: usize,
    /// The polling interval suggested to clients.
    pub poll_interval: Duration,
    /// How long a `before-task` tool's round may run in its request.
    pub inline: Duration,
}

impl From<&TasksConfig> for TaskSettings {
    fn from(c: &TasksConfig) -> Self {
        Self {
            ttl: Duration::from_millis(c.ttl_ms),
            deadline: Duration::from_millis(c.deadline_ms),
            max_per_subject: c.max_per_subject,
            max_per_tenant: c.max_per_tenant,
            poll_interval: Duration::from_millis(c.poll_interval_ms),
            inline: Duration::from_millis(c.inline_ms),
        }
    }
}

impl Default for TaskSettings {
    fn default() -> Self {
        Self::from(&TasksConfig::default())
    }
}

/// Whose a task is: only this caller of this tenant sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Owner {
    tenant: Arc<str>,
    caller: CallerId,
}

impl Owner {
    /// The owner of tasks `who` creates.
    pub fn of(who: &Principal) -> Self {
        Self {
            tenant: who.tenant.clone(),
            caller: who.caller(),
        }
    }

    /// A digest naming no one, equal for equal owners: how shared records name their owner.
    pub fn digest(&self) -> String {
        let (kind, name) = match &self.caller.name {
            CallerName::Subject(s) => ("sub", s.as_str()),
            CallerName::Client(c) => ("client", c.as_str()),
            CallerName::Anonymous => ("anonymous", ""),
        };
        let mut h = Sha256::new();
        for part in [
            &*self.tenant,
            self.caller.issuer.as_deref().unwrap_or(""),
            kind,
            name,
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        hex::encode(h.finalize())
    }
}

/// A task's lifecycle status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Working,
    InputRequired,
    Completed,
    Failed,
    Cancelled,
}

impl Status {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Working => "working",
            Self::InputRequired => "input_required",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the task is over.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

/// A task as its owner sees it.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub id: String,
    pub status: Status,
    pub status_message: Option<String>,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
    pub ttl: Duration,
    pub poll_interval: Duration,
    /// The tool the task runs.
    pub tool: String,
    /// Outstanding questions by key (`input_required`).
    pub input_requests: Map<String, Value>,
    /// The tool's result (`completed`).
    pub result: Option<Value>,
    /// The JSON-RPC error (`failed`).
    pub error: Option<Value>,
}

/// A task as replicas share it: its owner as a [`Owner::digest`], its state as its owner
/// would see it (times in ms since the epoch).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SharedTask {
    pub owner: String,
    pub id: String,
    pub status: Status,
    #[serde(default)]
    pub status_message: Option<String>,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub ttl_ms: u64,
    pub poll_interval_ms: u64,
    pub tool: String,
    #[serde(default)]
    pub input_requests: Map<String, Value>,
    #[serde(default)]
    pub result: Option<Value>,
    #[serde(default)]
    pub error: Option<Value>,
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl SharedTask {
    fn of(owner: &Owner, s: &Snapshot) -> Self {
        Self {
            owner: owner.digest(),
            id: s.id.clone(),
            status: s.status,
            status_message: s.status_message.clone(),
            created_ms: ms(s.created_at),
            updated_ms: ms(s.updated_at),
            ttl_ms: u64::try_from(s.ttl.as_millis()).unwrap_or(u64::MAX),
            poll_interval_ms: u64::try_from(s.poll_interval.as_millis()).unwrap_or(u64::MAX),
            tool: s.tool.clone(),
            input_requests: s.input_requests.clone(),
            result: s.result.clone(),
            error: s.error.clone(),
        }
    }

    fn snapshot(self) -> Snapshot {
        Snapshot {
            id: self.id,
            status: self.status,
            status_message: self.status_message,
            created_at: at(self.created_ms),
            updated_at: at(self.updated_ms),
            ttl: Duration::from_millis(self.ttl_ms),
            poll_interval: Duration::from_millis(self.poll_interval_ms),
            tool: self.tool,
            input_requests: self.input_requests,
            result: self.result,
            error: self.error,
        }
    }

    /// Time left until the task's TTL.
    pub fn left(&self) -> Duration {
        let end = self.created_ms.saturating_add(self.ttl_ms);
        Duration::from_millis(end.saturating_sub(ms(SystemTime::now())))
    }
}

/// What a replica asks of the replica running a task (whose owner must match).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Control {
    Cancel,
    Answer(Answers),
}

/// The shared store could not be asked.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the tasks of other replicas cannot be looked up right now: {0}")]
pub struct SharedDown(pub String);

/// Where replicas share their tasks (`cluster` implements it on Redis).
pub trait SharedTasks: Send + Sync {
    /// Write `task` of `tenant` (kept until its TTL). A record already terminal stays as it
    /// is: a cancel recorded by another replica is not undone by a late write.
    fn store<'a>(&'a self, tenant: &'a str, task: &'a SharedTask) -> BoxFuture<'a, ()>;
    /// Task `id` of `tenant`, if a replica wrote it.
    fn load<'a>(
        &'a self,
        tenant: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SharedTask>, SharedDown>>;
    /// Ask whichever replica runs task `id` of `tenant` for `owner` to apply `control`.
    fn send<'a>(
        &'a self,
        tenant: &'a str,
        id: &'a str,
        owner: &'a str,
        control: &'a Control,
    ) -> BoxFuture<'a, ()>;
    /// Count task `id` of `owner` (its digest) among the owner's unfinished tasks on every
    /// replica until it is stored as finished or `ttl` ends; `false` (and not counted) when
    /// the owner already has `cap`.
    fn start<'a>(
        &'a self,
        tenant: &'a str,
        owner: &'a str,
        id: &'a str,
        cap: usize,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, SharedDown>>;
}

/// Why a task could not be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Lookup {
    #[error(transparent)]
    NotFound(#[from] NotFound),
    #[error(transparent)]
    Down(#[from] SharedDown),
}

/// Why a task could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreateError {
    #[error(
        "this caller already has {0} unfinished tasks (tasks.max_per_subject); wait for one \
         to finish or cancel one"
    )]
    SubjectCap(usize),
    #[error("this tenant already keeps {0} tasks (tasks.max_per_tenant); try again later")]
    TenantCap(usize),
}

/// A task id its caller cannot use: unknown, expired or someone else's (indistinguishable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no such task (unknown, expired, or not this caller's)")]
pub struct NotFound;

/// Answers to a task's questions, by key (the client's result for each, as JSON).
pub type Answers = Vec<(String, Value)>;

struct Entry {
    owner: Owner,
    snapshot: Snapshot,
    expires: Instant,
    cancel: CancellationToken,
    /// Answers collected while questions are outstanding.
    answered: Vec<(String, Value)>,
    /// Wakes the running side once every question is answered.
    resume: Option<oneshot::Sender<Answers>>,
    /// The task as it is now, for those who announce its changes.
    changes: watch::Sender<Snapshot>,
}

impl Entry {
    fn set(&mut self, status: Status) {
        self.snapshot.status = status;
        self.snapshot.updated_at = SystemTime::now();
        self.changes.send_replace(self.snapshot.clone());
    }
}

/// Changes waiting to be written to the shared store, at most; more are dropped (logged).
const SHARED_BACKLOG: usize = 1024;

/// One tenant's tasks.
pub struct TaskTable {
    settings: TaskSettings,
    tasks: Mutex<HashMap<String, Entry>>,
    shared: OnceLock<Sharing>,
}

/// Where this table's changes go, with replicas.
struct Sharing {
    tenant: Arc<str>,
    store: Arc<dyn SharedTasks>,
    writes: mpsc::Sender<SharedTask>,
}

impl std::fmt::Debug for TaskTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskTable")
            .field("tasks", &self.tasks.lock().len())
            .finish_non_exhaustive()
    }
}

impl TaskTable {
    pub fn new(settings: TaskSettings) -> Arc<Self> {
        Arc::new(Self {
            settings,
            tasks: Mutex::new(HashMap::new()),
            shared: OnceLock::new(),
        })
    }

    /// Share this table (tenant `tenant`'s) through `store`: every change is written there,
    /// in order, and look-ups of tasks this replica does not hold read it.
    pub fn share_through(&self, tenant: Arc<str>, store: Arc<dyn SharedTasks>) {
        let (writes, mut queue) = mpsc::channel::<SharedTask>(SHARED_BACKLOG);
        let (writer, id) = (store.clone(), tenant.clone());
        tokio::spawn(async move {
            while let Some(task) = queue.recv().await {
                writer.store(&id, &task).await;
            }
        });
        let _ = self.shared.set(Sharing {
            tenant,
            store,
            writes,
        });
    }

    /// Write `entry`'s state to the shared store, if there is one.
    fn publish(&self, entry: &Entry) {
        if let Some(shared) = self.shared.get()
            && shared
                .writes
                .try_send(SharedTask::of(&entry.owner, &entry.snapshot))
                .is_err()
        {
            tracing::warn!(tenant = %shared.tenant,
                "a task change was not shared with the other replicas (the shared store is behind)");
        }
    }

    /// [`TaskTable::create`], with the owner's unfinished tasks on every replica counted
    /// against `max_per_subject` (with replicas; while the shared store is away each replica
    /// counts its own, and says so).
    pub async fn create_counted(
        self: &Arc<Self>,
        owner: Owner,
        tool: &str,
        cancel: CancellationToken,
    ) -> Result<TaskHandle, CreateError> {
        let digest = owner.digest();
        let Some(shared) = self.shared.get() else {
            return self.create(owner, tool, cancel);
        };
        // Shared only once it has its place: a refused task is never written to the store.
        let task = self.insert(owner, tool, cancel)?;
        let cap = self.settings.max_per_subject;
        match shared
            .store
            .start(&shared.tenant, &digest, task.id(), cap, self.settings.ttl)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                // Never seen by anyone: gone without a trace.
                task.cancel.cancel();
                self.tasks.lock().remove(task.id());
                return Err(CreateError::SubjectCap(cap));
            }
            Err(e) => {
                tracing::warn!(tenant = %shared.tenant,
                    "a task counts against tasks.max_per_subject on this replica only: {e}");
            }
        }
        if let Some(entry) = self.tasks.lock().get(task.id()) {
            self.publish(entry);
        }
        Ok(task)
    }

    /// `owner`'s task `id`, here or (with replicas) on whichever replica runs it.
    pub async fn find(&self, owner: &Owner, id: &str) -> Result<Snapshot, Lookup> {
        match self.get(owner, id) {
            Ok(s) => Ok(s),
            Err(NotFound) => Ok(self.elsewhere(owner, id).await?.snapshot()),
        }
    }

    /// `owner`'s task `id` as the shared store has it (another replica runs it).
    async fn elsewhere(&self, owner: &Owner, id: &str) -> Result<SharedTask, Lookup> {
        let shared = self.shared.get().ok_or(NotFound)?;
        let task = shared.store.load(&shared.tenant, id).await?;
        task.filter(|t| t.owner == owner.digest() && t.id == id && !t.left().is_zero())
            .ok_or(Lookup::NotFound(NotFound))
    }

    /// [`TaskTable::cancel`], for a task any replica runs: the shared record reads
    /// `cancelled` at once and the replica running it stops it.
    pub async fn cancel_anywhere(&self, owner: &Owner, id: &str) -> Result<(), Lookup> {
        if self.cancel(owner, id).is_ok() {
            return Ok(());
        }
        let mut task = self.elsewhere(owner, id).await?;
        if task.status.is_terminal() {
            return Ok(());
        }
        let shared = self.shared.get().ok_or(NotFound)?;
        task.status = Status::Cancelled;
        task.input_requests.clear();
        task.updated_ms = ms(SystemTime::now());
        shared.store.store(&shared.tenant, &task).await;
        let owner = owner.digest();
        shared
            .store
            .send(&shared.tenant, id, &owner, &Control::Cancel)
            .await;
        Ok(())
    }

    /// [`TaskTable::answer`], for a task any replica runs.
    pub async fn answer_anywhere(
        &self,
        owner: &Owner,
        id: &str,
        answers: Answers,
    ) -> Result<(), Lookup> {
        if self.get(owner, id).is_ok() {
            return Ok(self.answer(owner, id, answers)?);
        }
        self.elsewhere(owner, id).await?;
        let shared = self.shared.get().ok_or(NotFound)?;
        let owner = owner.digest();
        shared
            .store
            .send(&shared.tenant, id, &owner, &Control::Answer(answers))
            .await;
        Ok(())
    }

    /// Another replica asks this one to apply `control` to task `id` for the owner whose
    /// digest is `owner`; ignored unless this replica holds that owner's task.
    pub fn control(&self, owner: &str, id: &str, control: Control) {
        let holder = self
            .tasks
            .lock()
            .get(id)
            .map(|e| e.owner.clone())
            .filter(|o| o.digest() == owner);
        let Some(holder) = holder else {
            return;
        };
        let _ = match control {
            Control::Cancel => self.cancel(&holder, id),
            Control::Answer(answers) => self.answer(&holder, id, answers),
        };
    }

    /// How this table bounds its tasks.
    pub fn settings(&self) -> &TaskSettings {
        &self.settings
    }

    /// Create a working task for `owner` running `tool`, stopped through `cancel`; it exists
    /// (a `get` finds it, on every replica) before this returns.
    pub fn create(
        self: &Arc<Self>,
        owner: Owner,
        tool: &str,
        cancel: CancellationToken,
    ) -> Result<TaskHandle, CreateError> {
        let task = self.insert(owner, tool, cancel)?;
        if let Some(entry) = self.tasks.lock().get(task.id()) {
            self.publish(entry);
        }
        Ok(task)
    }

    /// [`Self::create`] on this replica only (not yet shared with the others).
    fn insert(
        self: &Arc<Self>,
        owner: Owner,
        tool: &str,
        cancel: CancellationToken,
    ) -> Result<TaskHandle, CreateError> {
        let mut tasks = self.tasks.lock();
        let now = Instant::now();
        sweep(&mut tasks, now);
        if tasks.len() >= self.settings.max_per_tenant && !make_room(&mut tasks) {
            return Err(CreateError::TenantCap(self.settings.max_per_tenant));
        }
        let unfinished = tasks
            .values()
            .filter(|e| e.owner == owner && !e.snapshot.status.is_terminal())
            .count();
        if unfinished >= self.settings.max_per_subject {
            return Err(CreateError::SubjectCap(self.settings.max_per_subject));
        }
        let id = new_id();
        let created = SystemTime::now();
        let snapshot = Snapshot {
            id: id.clone(),
            status: Status::Working,
            status_message: None,
            created_at: created,
            updated_at: created,
            ttl: self.settings.ttl,
            poll_interval: self.settings.poll_interval,
            tool: tool.to_string(),
            input_requests: Map::new(),
            result: None,
            error: None,
        };
        tasks.insert(
            id.clone(),
            Entry {
                owner,
                changes: watch::Sender::new(snapshot.clone()),
                snapshot,
                expires: now + self.settings.ttl,
                cancel: cancel.clone(),
                answered: Vec::new(),
                resume: None,
            },
        );
        Ok(TaskHandle {
            table: self.clone(),
            id,
            cancel,
            expires: now + self.settings.ttl,
        })
    }

    /// The task `id`, if it is `owner`'s and has not expired.
    pub fn get(&self, owner: &Owner, id: &str) -> Result<Snapshot, NotFound> {
        self.owned(owner, id, |e| e.snapshot.clone())
    }

    /// Apply `f` to `owner`'s live task `id`. Only that entry's TTL is checked (an expired
    /// one is dropped and stopped here); the whole table is swept when tasks are created, so a
    /// poll costs one look-up however many tasks the tenant keeps.
    fn owned<R>(
        &self,
        owner: &Owner,
        id: &str,
        f: impl FnOnce(&mut Entry) -> R,
    ) -> Result<R, NotFound> {
        let mut tasks = self.tasks.lock();
        if tasks.get(id).is_some_and(|e| e.expires <= Instant::now())
            && let Some(expired) = tasks.remove(id)
        {
            expired.cancel.cancel();
        }
        let entry = tasks
            .get_mut(id)
            .filter(|e| &e.owner == owner)
            .ok_or(NotFound)?;
        Ok(f(entry))
    }

    /// Cancel `owner`'s task `id`: a task still running stops (its instance is dropped) and
    /// reads `cancelled`; a finished one is left as it is.
    pub fn cancel(&self, owner: &Owner, id: &str) -> Result<(), NotFound> {
        self.owned(owner, id, |entry| {
            if !entry.snapshot.status.is_terminal() {
                entry.snapshot.input_requests.clear();
                entry.resume = None;
                entry.set(Status::Cancelled);
                entry.cancel.cancel();
                self.publish(entry);
            }
        })
    }

    /// Deliver `answers` to `owner`'s task `id`. Answers to keys it is not waiting for are
    /// ignored; once every question is answered the task resumes.
    pub fn answer(&self, owner: &Owner, id: &str, answers: Answers) -> Result<(), NotFound> {
        self.owned(owner, id, |entry| {
            if entry.snapshot.status != Status::InputRequired {
                return;
            }
            for (key, value) in answers {
                if entry.snapshot.input_requests.remove(&key).is_some() {
                    entry.answered.push((key, value));
                }
            }
            if entry.snapshot.input_requests.is_empty() {
                let answered = std::mem::take(&mut entry.answered);
                if let Some(resume) = entry.resume.take() {
                    let _ = resume.send(answered);
                }
                entry.set(Status::Working);
            }
            self.publish(entry);
        })
    }

    /// Tasks alive now (for tests and the inventory).
    pub fn len(&self) -> usize {
        let mut tasks = self.tasks.lock();
        sweep(&mut tasks, Instant::now());
        tasks.len()
    }

    /// Whether no task is alive.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Apply `change` to task `id` unless it is over (a cancelled task stays cancelled).
    fn update(&self, id: &str, change: impl FnOnce(&mut Entry)) {
        let mut tasks = self.tasks.lock();
        if let Some(entry) = tasks.get_mut(id)
            && !entry.snapshot.status.is_terminal()
        {
            change(entry);
            self.publish(entry);
        }
    }
}

/// A full table makes room for one more task: the oldest finished task of the caller that
/// keeps the most tasks is dropped (its result was there to read until now). So one caller
/// whose tasks finish at once cannot fill the tenant's table for the TTL and lock every other
/// caller out; its unfinished tasks are bounded by `max_per_subject` already. `false` when
/// every kept task is still running: then the table is full of others' work.
fn make_room(tasks: &mut HashMap<String, Entry>) -> bool {
    let mut kept: HashMap<&Owner, usize> = HashMap::new();
    for e in tasks.values() {
        *kept.entry(&e.owner).or_default() += 1;
    }
    let victim = tasks
        .iter()
        .filter(|(_, e)| e.snapshot.status.is_terminal())
        .max_by_key(|(_, e)| (kept[&e.owner], std::cmp::Reverse(e.snapshot.updated_at)))
        .map(|(id, _)| id.clone());
    match victim {
        Some(id) => {
            tasks.remove(&id);
            true
        }
        None => false,
    }
}

/// Drop every task past its TTL, stopping those still running.
fn sweep(tasks: &mut HashMap<String, Entry>, now: Instant) {
    tasks.retain(|_, e| {
        let alive = e.expires > now;
        if !alive {
            e.cancel.cancel();
        }
        alive
    });
}

/// 128 random bits, hex: unguessable, so an id is no capability by itself either way.
fn new_id() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

/// The running side of one task.
pub struct TaskHandle {
    table: Arc<TaskTable>,
    id: String,
    cancel: CancellationToken,
    /// Its TTL's end: a task still waiting for answers then stops waiting.
    expires: Instant,
}

impl TaskHandle {
    /// The task's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Fired when the task is cancelled or expires: stop working.
    pub fn cancelled(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// The task as its owner would see it now.
    pub fn snapshot(&self) -> Option<Snapshot> {
        self.table
            .tasks
            .lock()
            .get(&self.id)
            .map(|e| e.snapshot.clone())
    }

    /// The task's changes (its status, questions, result), until it is gone; `None` if it is
    /// gone already.
    pub fn watch(&self) -> Option<watch::Receiver<Snapshot>> {
        self.table
            .tasks
            .lock()
            .get(&self.id)
            .map(|e| e.changes.subscribe())
    }

    /// A progress message for the task's status.
    pub fn progress(&self, message: String) {
        self.table
            .update(&self.id, |e| e.snapshot.status_message = Some(message));
    }

    /// The tool finished with `result`.
    pub fn complete(&self, result: Value) {
        self.table.update(&self.id, |e| {
            e.snapshot.result = Some(result);
            e.set(Status::Completed);
        });
    }

    /// The call failed with the JSON-RPC error `error`.
    pub fn fail(&self, error: Value) {
        self.table.update(&self.id, |e| {
            e.snapshot.error = Some(error);
            e.set(Status::Failed);
        });
    }

    /// Wait in `input_required` for answers to `questions` (key → `{method, params}`); `None`
    /// if the task was cancelled or reached its TTL first (then it is stopped, even if no one
    /// looks at the table again).
    pub async fn ask(&self, questions: Map<String, Value>) -> Option<Answers> {
        let (tx, rx) = oneshot::channel();
        let mut asked = false;
        self.table.update(&self.id, |e| {
            e.snapshot.input_requests = questions;
            e.answered.clear();
            e.resume = Some(tx);
            e.set(Status::InputRequired);
            asked = true;
        });
        if !asked {
            return None;
        }
        tokio::select! {
            answers = rx => answers.ok(),
            () = self.cancel.cancelled() => None,
            () = tokio::time::sleep_until(self.expires) => {
                self.cancel.cancel();
                None
            }
        }
    }
}

impl Drop for TaskHandle {
    /// A task whose runner went away without an outcome failed (a bug, or shutdown).
    fn drop(&mut self) {
        self.table.update(&self.id, |e| {
            e.snapshot.error = Some(serde_json::json!({
                "code": -32603,
                "message": "the task stopped without a result",
            }));
            e.set(Status::Failed);
        });
    }
}

/// `t` as RFC 3339 in UTC with milliseconds, e.g. `2026-12-02T06:30:00.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Identity;

    fn who(tenant: &str, subject: &str) -> Principal {
        let identity = Identity {
            subject: subject.into(),
            scopes: vec![],
        };
        Principal::from_identity(Arc::from(tenant), &identity)
    }

    /// A task of `owner` running `slow`.
    fn start(t: &Arc<TaskTable>, owner: &Owner) -> Result<TaskHandle, CreateError> {
        t.create(owner.clone(), "slow", CancellationToken::new())
    }

    fn table(max_per_subject: usize) -> Arc<TaskTable> {
        TaskTable::new(TaskSettings {
            max_per_subject,
            ..TaskSettings::default()
        })
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_657_000_123);
        assert_eq!(rfc3339(t), "2025-12-02T06:30:00.123Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // A leap day.
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn another_caller_or_tenant_cannot_see_cancel_or_answer_a_task() {
        let t = table(4);
        let alice = Owner::of(&who("a", "alice"));
        let task = start(&t, &alice).unwrap();
        let id = task.id().to_string();
        // The same `sub` vouched for by another issuer is someone else.
        let mut elsewhere = who("a", "alice");
        elsewhere.issuer = Some(Arc::from("https://other-issuer.example"));
        let strangers = [
            Owner::of(&who("a", "bob")),
            Owner::of(&who("b", "alice")),
            Owner::of(&elsewhere),
        ];
        for stranger in strangers {
            assert_eq!(t.get(&stranger, &id).unwrap_err(), NotFound);
            assert_eq!(t.cancel(&stranger, &id).unwrap_err(), NotFound);
            assert_eq!(t.answer(&stranger, &id, vec![]).unwrap_err(), NotFound);
        }
        assert!(!task.cancelled().is_cancelled());
        assert_eq!(t.get(&alice, &id).unwrap().status, Status::Working);
    }

    #[test]
    fn the_per_subject_cap_counts_unfinished_tasks_only() {
        let t = table(2);
        let alice = Owner::of(&who("a", "alice"));
        let one = start(&t, &alice).unwrap();
        let _two = start(&t, &alice).unwrap();
        assert_eq!(start(&t, &alice).err(), Some(CreateError::SubjectCap(2)));
        // Someone else is not affected.
        assert!(start(&t, &Owner::of(&who("a", "bob"))).is_ok());
        one.complete(serde_json::json!({"content": []}));
        assert!(start(&t, &alice).is_ok());
    }

    /// #28 AC2. Before: finished tasks counted against `max_per_tenant` until their TTL, so
    /// one caller whose tasks finish at once filled the tenant's table and every other caller
    /// got `TenantCap` for the TTL. Now the heaviest holder's oldest finished task makes room.
    #[test]
    fn one_callers_finished_tasks_cannot_lock_others_out_of_the_tenant() {
        let t = TaskTable::new(TaskSettings {
            max_per_subject: 4,
            max_per_tenant: 8,
            ..TaskSettings::default()
        });
        let (alice, bob) = (Owner::of(&who("a", "alice")), Owner::of(&who("a", "bob")));
        let mut finished = Vec::new();
        for _ in 0..8 {
            let task = start(&t, &alice).unwrap();
            finished.push(task.id().to_string());
            task.complete(serde_json::json!({"content": []}));
        }
        let _bobs = start(&t, &bob).expect("room made from alice's finished tasks");
        assert!(t.get(&alice, &finished[0]).is_err(), "her oldest went");
        assert!(t.get(&alice, &finished[7]).is_ok(), "her newest is kept");
        assert_eq!(t.len(), 8, "the cap holds");
        // A table full of running work is full.
        let t = TaskTable::new(TaskSettings {
            max_per_subject: 4,
            max_per_tenant: 4,
            ..TaskSettings::default()
        });
        let _running: Vec<_> = (0..4).map(|_| start(&t, &alice).unwrap()).collect();
        assert_eq!(start(&t, &bob).err(), Some(CreateError::TenantCap(4)));
    }

    #[test]
    fn cancel_wins_over_a_later_result_and_fires_the_token() {
        let t = table(4);
        let alice = Owner::of(&who("a", "alice"));
        let task = start(&t, &alice).unwrap();
        let id = task.id().to_string();
        t.cancel(&alice, &id).unwrap();
        assert!(task.cancelled().is_cancelled());
        task.complete(serde_json::json!({"content": []}));
        let seen = t.get(&alice, &id).unwrap();
        assert_eq!(seen.status, Status::Cancelled);
        assert!(seen.result.is_none());
        // Idempotent.
        t.cancel(&alice, &id).unwrap();
    }

    #[test]
    fn owner_digests_tell_callers_issuers_and_tenants_apart() {
        let mut elsewhere = who("a", "alice");
        elsewhere.issuer = Some(Arc::from("https://other-issuer.example"));
        let alice = Owner::of(&who("a", "alice")).digest();
        assert_eq!(alice, Owner::of(&who("a", "alice")).digest());
        for other in [who("a", "bob"), who("b", "alice"), elsewhere] {
            assert_ne!(alice, Owner::of(&other).digest());
        }
        assert!(!alice.contains("alice"));
    }

    #[test]
    fn a_relayed_control_applies_only_to_its_owners_task() {
        let t = table(4);
        let alice = Owner::of(&who("a", "alice"));
        let task = start(&t, &alice).unwrap();
        let id = task.id().to_string();
        t.control(&Owner::of(&who("a", "bob")).digest(), &id, Control::Cancel);
        assert!(!task.cancelled().is_cancelled(), "bob's cancel is ignored");
        t.control(&alice.digest(), &id, Control::Cancel);
        assert!(task.cancelled().is_cancelled());
        assert_eq!(t.get(&alice, &id).unwrap().status, Status::Cancelled);
    }

    #[test]
    fn a_dropped_runner_fails_its_task() {
        let t = table(4);
        let alice = Owner::of(&who("a", "alice"));
        let id = start(&t, &alice).unwrap().id().to_string();
        let seen = t.get(&alice, &id).unwrap();
        assert_eq!(seen.status, Status::Failed);
        assert_eq!(seen.error.unwrap()["code"], -32603);
    }

    #[tokio::test]
    async fn questions_resume_only_when_every_one_is_answered() {
        let t = table(4);
        let alice = Owner::of(&who("a", "alice"));
        let task = t
            .create(alice.clone(), "multi", CancellationToken::new())
            .unwrap();
        let id = task.id().to_string();
        let mut questions = Map::new();
        questions.insert(
            "first".into(),
            serde_json::json!({"method": "elicitation/create"}),
        );
        questions.insert(
            "second".into(),
            serde_json::json!({"method": "elicitation/create"}),
        );
        let waiting = tokio::spawn(async move {
            let answers = task.ask(questions).await;
            (task, answers)
        });
        while t.get(&alice, &id).unwrap().status != Status::InputRequired {
            tokio::task::yield_now().await;
        }
        t.answer(
            &alice,
            &id,
            vec![("first".into(), serde_json::json!({"action": "accept"}))],
        )
        .unwrap();
        let seen = t.get(&alice, &id).unwrap();
        assert_eq!(seen.status, Status::InputRequired);
        assert_eq!(seen.input_requests.keys().collect::<Vec<_>>(), ["second"]);
        // An unknown key is ignored.
        t.answer(&alice, &id, vec![("nope".into(), serde_json::json!({}))])
            .unwrap();
        t.answer(
            &alice,
            &id,
            vec![("second".into(), serde_json::json!({"action": "decline"}))],
        )
        .unwrap();
        let (_task, answers) = waiting.await.unwrap();
        let keys: Vec<String> = answers.unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["first", "second"]);
        assert_eq!(t.get(&alice, &id).unwrap().status, Status::Working);
    }

    #[tokio::test]
    async fn a_task_waiting_for_answers_stops_at_its_ttl_untouched() {
        let t = TaskTable::new(TaskSettings {
            ttl: Duration::from_millis(300),
            ..TaskSettings::default()
        });
        let task = start(&t, &Owner::of(&who("a", "alice"))).unwrap();
        let mut questions = Map::new();
        questions.insert(
            "q".into(),
            serde_json::json!({"method": "elicitation/create"}),
        );
        let answers = tokio::time::timeout(Duration::from_secs(2), task.ask(questions)).await;
        assert_eq!(answers.expect("stopped waiting at the TTL"), None);
        assert!(task.cancelled().is_cancelled());
    }

    #[tokio::test]
    async fn a_task_past_its_ttl_is_gone_and_stopped() {
        let t = TaskTable::new(TaskSettings {
            ttl: Duration::from_millis(300),
            ..TaskSettings::default()
        });
        let alice = Owner::of(&who("a", "alice"));
        let task = start(&t, &alice).unwrap();
        let id = task.id().to_string();
        assert!(t.get(&alice, &id).is_ok());
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(t.get(&alice, &id).unwrap_err(), NotFound);
        assert!(task.cancelled().is_cancelled());
        assert!(t.is_empty());
    }
}
