//! A tenant's Cedar policies (#33): who may call which tool with which arguments, read which
//! resource, get which prompt — from where and when.
//!
//! Owns: reading the policy files (each policy named by its `@id("…")` annotation, else
//! `<file stem>:policyN`), validating them against the schema generated from the catalog
//! (`schema`; strictly, at start, on every reload of the files, and again when the plugins
//! change), translating one [`Request`] into Cedar's — the caller's and the item's entities
//! kept per (caller, item), the policies sliced by action, decisions remembered (`memo`) —,
//! evaluating it (a policy that fails to evaluate refuses: fail closed), shadow mode, and
//! reloading when the files change (a set that does not parse or validate leaves the old one
//! serving, and says why). Must not: decide on scopes or claim rules (`authz`), answer
//! refusals, or see a token.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use cedar_policy::{
    ActionConstraint, Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName,
    EntityUid, PolicyId, PolicySet, RestrictedExpression, Schema, ValidationMode, Validator,
};
use parking_lot::Mutex;

use super::memo::{ContextInputs, Memo, Now, NowUse, context_key};
use serde_json::Value;

use super::{Arguments, Request};
use crate::auth::Principal;
use crate::config::PolicyMode;
use crate::plugins::{Catalog, LoadedPlugin, Target};

pub use super::schema::{NAMESPACE, schema_json};
use super::schema::{Ty, schema_and_arguments};

/// The largest policy file read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// How often the files are looked at for changes.
const WATCH_EVERY: Duration = Duration::from_millis(500);

/// Why the policies refuse a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// These `forbid` policies apply.
    Forbidden(Vec<String>),
    /// No `permit` policy applies.
    NotPermitted,
    /// The request could not be put to the policies, or a policy failed to evaluate: refused.
    Failed(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Forbidden(ids) => {
                let ids: Vec<String> = ids.iter().map(|i| format!("`{i}`")).collect();
                write!(f, "policy {}", ids.join(", "))
            }
            Refusal::NotPermitted => write!(f, "the policies (none permits it)"),
            Refusal::Failed(why) => write!(f, "the policies (they could not decide: {why})"),
        }
    }
}

/// A policy set as read from the files.
struct Loaded {
    set: PolicySet,
    /// The policies' ids, in file order.
    ids: Vec<String>,
    /// The files as they were read (length and modification time).
    seen: Vec<Option<(u64, SystemTime)>>,
    loaded_at: SystemTime,
    /// The policies that can apply to each action asked about (their action scope names it,
    /// a group it is in, or any action): a decision evaluates only those.
    by_action: Mutex<HashMap<EntityUid, Arc<PolicySet>>>,
    /// This set's number among the sets read (decisions are remembered under it).
    generation: u64,
    /// What it reads of `context.now`.
    now_use: NowUse,
}

/// Numbers the policy sets read, so a remembered decision is never taken for another set's.
static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// What the policies see of one catalog: its schema, and each tool's argument type.
struct Model {
    generation: u64,
    schema: Schema,
    arguments: HashMap<String, Ty>,
    /// The actions, with their groups (a tool's action is in `tools/call`).
    actions: Entities,
    types: Types,
    /// Each tool's action and entity, made once per catalog.
    tools: HashMap<String, (EntityUid, Entity)>,
    /// The entities of the (caller, item) pairs asked about lately: building them — the
    /// caller's attributes, the transitive closure — is most of a decision's cost, and a
    /// caller asks about the same few items again and again.
    recent: parking_lot::Mutex<HashMap<u64, Vec<Arc<Asked>>>>,
}

/// The most (caller, item) pairs [`Model::recent`] keeps (then it starts over).
const RECENT: usize = 4096;

/// One (caller, item) pair's part of a Cedar request, made once.
struct Asked {
    /// Everything about the caller the entity was made from (compared in full: a hash that
    /// collided must never hand one caller another's entity).
    caller: CallerKey,
    target: (u8, String),
    principal: EntityUid,
    action: EntityUid,
    resource: EntityUid,
    entities: Entities,
    /// The decisions made for it.
    memo: Memo<Result<(), Refusal>>,
}

/// What a caller's entity is made from.
#[derive(PartialEq, Eq)]
struct CallerKey {
    issuer: Option<Arc<str>>,
    subject: Option<String>,
    client_id: Option<String>,
    scopes: std::collections::BTreeSet<String>,
    credential: Option<crate::auth::Scheme>,
    /// The claims policies may see (`[auth] claims`), as the token has them.
    claims: Vec<(String, String)>,
}

impl CallerKey {
    fn of(who: &Principal, claims: &[String]) -> Self {
        Self {
            issuer: who.issuer.clone(),
            subject: who.subject.clone(),
            client_id: who.client_id.clone(),
            scopes: who.scopes.clone(),
            credential: who.credential,
            claims: selected(who, claims).cloned().collect(),
        }
    }

    fn is(&self, who: &Principal, claims: &[String]) -> bool {
        self.issuer == who.issuer
            && self.subject == who.subject
            && self.client_id == who.client_id
            && self.credential == who.credential
            && self.scopes == who.scopes
            && self.claims.iter().eq(selected(who, claims))
    }
}

/// The claims of `who` that policies see.
fn selected<'a>(
    who: &'a Principal,
    claims: &'a [String],
) -> impl Iterator<Item = &'a (String, String)> + 'a {
    who.claims
        .iter()
        .filter(move |(name, _)| claims.contains(name))
}

/// Where `who` asking about `target` is kept in [`Model::recent`].
fn recent_slot(who: &Principal, claims: &[String], target: (u8, &str)) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&who.issuer, &who.subject, &who.client_id, &who.scopes).hash(&mut h);
    who.credential.map(|c| c as u8).hash(&mut h);
    for claim in selected(who, claims) {
        claim.hash(&mut h);
    }
    target.hash(&mut h);
    h.finish()
}

/// The entity types, parsed once.
struct Types {
    caller: EntityTypeName,
    tool: EntityTypeName,
    prompt: EntityTypeName,
    resource: EntityTypeName,
    action: EntityTypeName,
}

impl Types {
    fn new() -> Result<Self, String> {
        let name = |kind: &str| {
            EntityTypeName::from_str(&format!("{NAMESPACE}::{kind}")).map_err(|e| e.to_string())
        };
        Ok(Self {
            caller: name("Caller")?,
            tool: name("Tool")?,
            prompt: name("Prompt")?,
            resource: name("Resource")?,
            action: name("Action")?,
        })
    }

    fn uid(name: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(name.clone(), EntityId::new(id))
    }
}

/// What the inventory shows of a tenant's policies.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// The files.
    pub files: Vec<String>,
    /// `enforce` or `shadow`.
    pub mode: &'static str,
    /// The ids of the policies serving.
    pub policies: Vec<String>,
    /// When they were read (Unix seconds).
    pub loaded_at_unix: u64,
    /// Why the last reload (or the last check against a changed catalog) failed, if it did.
    pub last_error: Option<String>,
}

/// One tenant's policies.
pub struct TenantPolicies {
    files: Vec<PathBuf>,
    mode: PolicyMode,
    /// The claims a caller's token may carry to policies (`auth.claims`).
    claims: Vec<String>,
    loaded: ArcSwap<Loaded>,
    model: ArcSwapOption<Model>,
    /// Builds one model at a time.
    building: Mutex<()>,
    last_error: Mutex<Option<String>>,
}

impl std::fmt::Debug for TenantPolicies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantPolicies")
            .field("files", &self.files)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl TenantPolicies {
    /// Read `files` and check them against the schema of `catalog`: the error names the file
    /// and the problem.
    pub fn load(
        files: Vec<PathBuf>,
        mode: PolicyMode,
        claims: Vec<String>,
        catalog: &Catalog,
    ) -> Result<Self, String> {
        let loaded = read(&files)?;
        let model = Model::of(catalog, &claims)?;
        validate(&model.schema, &loaded.set)?;
        Ok(Self {
            files,
            mode,
            claims,
            loaded: ArcSwap::from_pointee(loaded),
            model: ArcSwapOption::from_pointee(model),
            building: Mutex::new(()),
            last_error: Mutex::new(None),
        })
    }

    /// What the inventory shows.
    pub fn status(&self) -> Status {
        let loaded = self.loaded.load();
        Status {
            files: self.files.iter().map(|f| f.display().to_string()).collect(),
            mode: match self.mode {
                PolicyMode::Enforce => "enforce",
                PolicyMode::Shadow => "shadow",
            },
            policies: loaded.ids.clone(),
            loaded_at_unix: loaded
                .loaded_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            last_error: self.last_error.lock().clone(),
        }
    }

    /// The model of `catalog` (of `tenant`), built once per catalog.
    fn model(&self, tenant: &str, catalog: &Catalog) -> Result<Arc<Model>, String> {
        if let Some(m) = self.model.load_full()
            && m.generation == catalog.generation
        {
            return Ok(m);
        }
        let _one = self.building.lock();
        if let Some(m) = self.model.load_full()
            && m.generation == catalog.generation
        {
            return Ok(m);
        }
        let model = Arc::new(Model::of(catalog, &self.claims)?);
        // The plugins changed: the policies must still fit them (they serve either way; a
        // policy naming what is gone no longer applies, and one that no longer type-checks
        // fails to evaluate and refuses).
        let problem = validate(&model.schema, &self.loaded.load().set).err();
        if let Some(p) = &problem {
            tracing::error!(tenant, "the policies no longer fit the plugins: {p}");
        }
        *self.last_error.lock() = problem;
        // Calls in flight on an older catalog rebuild theirs; the newest wins.
        if self
            .model
            .load()
            .as_ref()
            .is_none_or(|m| m.generation < model.generation)
        {
            self.model.store(Some(model.clone()));
        }
        Ok(model)
    }

    /// Read the files again if they changed, and serve what they say if it parses and fits
    /// the schema of `catalog`; otherwise keep serving the old set. `Ok(true)`: reloaded.
    pub fn reload_if_changed(&self, tenant: &str, catalog: &Catalog) -> Result<bool, String> {
        let seen: Vec<_> = self.files.iter().map(|f| fingerprint(f)).collect();
        if seen == self.loaded.load().seen {
            return Ok(false);
        }
        let outcome = read(&self.files).and_then(|loaded| {
            let model = self.model(tenant, catalog)?;
            validate(&model.schema, &loaded.set)?;
            Ok(loaded)
        });
        match outcome {
            Ok(loaded) => {
                tracing::info!(tenant, policies = loaded.ids.len(), "policies reloaded");
                self.loaded.store(Arc::new(loaded));
                *self.last_error.lock() = None;
                Ok(true)
            }
            Err(e) => {
                tracing::error!(
                    tenant,
                    "policies not reloaded, the previous ones still serve: {e}"
                );
                // Not retried until the files change again.
                let mut old = Loaded::clone_of(&self.loaded.load());
                old.seen = seen;
                self.loaded.store(Arc::new(old));
                *self.last_error.lock() = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Look at the files every half second and reload them when they change, until
    /// `shutdown`.
    /// `reloaded` hears each attempt: the policies now serving, or why the files were not
    /// taken.
    pub fn watch(
        self: Arc<Self>,
        tenant: Arc<str>,
        catalog: impl Fn() -> Arc<Catalog> + Send + 'static,
        reloaded: impl Fn(Result<Vec<String>, String>) + Send + 'static,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(WATCH_EVERY) => {}
                }
                match self.reload_if_changed(&tenant, &catalog()) {
                    Ok(false) => {}
                    Ok(true) => reloaded(Ok(self.loaded.load().ids.clone())),
                    Err(e) => reloaded(Err(e)),
                }
            }
        });
    }

    /// The policies' answer to `request` (for `plugin`'s item in `catalog`): `Err` when they
    /// refuse it and are enforced. In shadow mode a refusal is logged and `Ok`.
    pub fn decide(
        &self,
        tenant: &str,
        catalog: &Catalog,
        plugin: &LoadedPlugin,
        request: &Request<'_>,
    ) -> Result<(), Refusal> {
        let answer = self
            .model(tenant, catalog)
            .map_err(Refusal::Failed)
            .and_then(|model| self.evaluate(&model, catalog, plugin, request));
        match (answer, self.mode) {
            (Ok(()), _) => Ok(()),
            (Err(refusal), PolicyMode::Shadow) => {
                tracing::warn!(tenant, caller = %request.who.caller(), target = %request.target.key(),
                    "shadow policies would refuse this: {refusal}");
                Ok(())
            }
            (Err(refusal), PolicyMode::Enforce) => {
                tracing::info!(tenant, caller = %request.who.caller(), target = %request.target.key(),
                    "refused by {refusal}");
                Err(refusal)
            }
        }
    }

    fn evaluate(
        &self,
        model: &Model,
        catalog: &Catalog,
        plugin: &LoadedPlugin,
        request: &Request<'_>,
    ) -> Result<(), Refusal> {
        let asked = model
            .asked(catalog, plugin, request.target, request.who, &self.claims)
            .map_err(Refusal::Failed)?;
        let loaded = self.loaded.load();
        let approval = approval_type(request.who);
        let arguments = match (request.target, request.arguments) {
            (Target::Tool(_), Arguments::Given(a)) => Some(a),
            _ => None,
        };
        let inputs = ContextInputs {
            listing: matches!(request.arguments, Arguments::None),
            approval: approval.as_deref(),
            address: request.who.address,
            arguments,
            now: Now::current(),
        };
        // The same question in the same context, under the same policies: the same answer.
        let key = context_key(&inputs, loaded.now_use);
        if let Some(decided) = asked.memo.get(loaded.generation, &key) {
            return decided;
        }
        let cedar = model
            .cedar_request(&asked, request.target, &inputs)
            .map_err(Refusal::Failed)?;
        let policies = loaded.for_action(&asked.action, &model.actions);
        let decided = answer(&Authorizer::new().is_authorized(&cedar, &policies, &asked.entities));
        asked.memo.put(loaded.generation, key, decided.clone());
        decided
    }
}

/// Cedar's response as the gateway's answer.
fn answer(response: &cedar_policy::Response) -> Result<(), Refusal> {
    let failed: Vec<String> = response
        .diagnostics()
        .errors()
        .map(|e| e.to_string())
        .collect();
    if !failed.is_empty() {
        return Err(Refusal::Failed(failed.join("; ")));
    }
    match response.decision() {
        Decision::Allow => Ok(()),
        Decision::Deny => {
            let ids: Vec<String> = response
                .diagnostics()
                .reason()
                .map(ToString::to_string)
                .collect();
            Err(if ids.is_empty() {
                Refusal::NotPermitted
            } else {
                Refusal::Forbidden(ids)
            })
        }
    }
}

impl Loaded {
    fn clone_of(other: &Loaded) -> Self {
        Self {
            set: other.set.clone(),
            ids: other.ids.clone(),
            seen: other.seen.clone(),
            loaded_at: other.loaded_at,
            by_action: Mutex::default(),
            generation: other.generation,
            now_use: other.now_use,
        }
    }

    /// The policies whose action scope can match `action` (in `actions`, with its groups).
    /// Leaving out one whose scope cannot match changes no decision: its condition is false
    /// before its body is looked at.
    fn for_action(&self, action: &EntityUid, actions: &Entities) -> Arc<PolicySet> {
        if let Some(set) = self.by_action.lock().get(action) {
            return set.clone();
        }
        let groups: Vec<EntityUid> = actions
            .ancestors(action)
            .map(|a| a.cloned().collect())
            .unwrap_or_default();
        let mut set = PolicySet::new();
        for policy in self.set.policies() {
            let applies = match policy.action_constraint() {
                ActionConstraint::Any => true,
                ActionConstraint::Eq(a) => &a == action,
                ActionConstraint::In(list) => {
                    list.iter().any(|a| a == action || groups.contains(a))
                }
            };
            if applies && set.add(policy.clone()).is_err() {
                // Ids are unique in `self.set`; were one not, keep every policy.
                return Arc::new(self.set.clone());
            }
        }
        let set = Arc::new(set);
        self.by_action.lock().insert(action.clone(), set.clone());
        set
    }
}

/// A file's length and modification time, if it can be read.
fn fingerprint(file: &Path) -> Option<(u64, SystemTime)> {
    let meta = std::fs::metadata(file).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// Read and parse `files` into one set, each policy named by its `@id`, else
/// `<file stem>:policyN`.
fn read(files: &[PathBuf]) -> Result<Loaded, String> {
    let mut set = PolicySet::new();
    let mut ids = Vec::new();
    let seen = files.iter().map(|f| fingerprint(f)).collect();
    for file in files {
        let shown = file.display();
        let size = std::fs::metadata(file)
            .map_err(|e| format!("{shown}: {e}"))?
            .len();
        if size > MAX_FILE_BYTES {
            return Err(format!("{shown}: larger than {MAX_FILE_BYTES} bytes"));
        }
        let text = std::fs::read_to_string(file).map_err(|e| format!("{shown}: {e}"))?;
        let parsed = PolicySet::from_str(&text).map_err(|e| format!("{shown}: {e:?}"))?;
        if parsed.templates().next().is_some() {
            return Err(format!("{shown}: policy templates are not supported"));
        }
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut policies: Vec<_> = parsed.policies().collect();
        policies.sort_by_key(|p| {
            p.id()
                .to_string()
                .trim_start_matches("policy")
                .parse::<u64>()
                .unwrap_or(u64::MAX)
        });
        for policy in policies {
            let id = policy
                .annotation("id")
                .map_or_else(|| format!("{stem}:{}", policy.id()), str::to_string);
            set.add(policy.new_id(PolicyId::new(&id)))
                .map_err(|e| format!("{shown}: policy `{id}`: {e}"))?;
            ids.push(id);
        }
    }
    Ok(Loaded {
        now_use: NowUse::of(&set),
        set,
        ids,
        seen,
        loaded_at: SystemTime::now(),
        by_action: Mutex::default(),
        generation: GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
    })
}

/// Validate `set` against `schema`, strictly: the error lists what does not fit.
fn validate(schema: &Schema, set: &PolicySet) -> Result<(), String> {
    let result = Validator::new(schema.clone()).validate(set, ValidationMode::Strict);
    for warning in result.validation_warnings() {
        tracing::warn!("policy warning: {warning}");
    }
    if result.validation_passed() {
        return Ok(());
    }
    let errors: Vec<String> = result.validation_errors().map(|e| format!("{e}")).collect();
    Err(format!(
        "the policies do not fit the schema: {}",
        errors.join("; ")
    ))
}

impl Model {
    fn of(catalog: &Catalog, claims: &[String]) -> Result<Self, String> {
        let (json, arguments) = schema_and_arguments(catalog, claims);
        let schema = Schema::from_json_value(json)
            .map_err(|e| format!("the generated policy schema is not valid: {e}"))?;
        let actions = schema.action_entities().map_err(|e| e.to_string())?;
        let types = Types::new()?;
        let mut tools = HashMap::new();
        for (plugin, tool) in catalog.tools() {
            let entity = item(catalog, plugin, Target::Tool(&tool.name), &types)?;
            tools.insert(tool.name.clone(), entity);
        }
        Ok(Self {
            generation: catalog.generation,
            schema,
            arguments,
            actions,
            types,
            tools,
            recent: parking_lot::Mutex::default(),
        })
    }

    /// The Cedar request of `asked` about `target` in the context `inputs`.
    fn cedar_request(
        &self,
        asked: &Asked,
        target: Target<'_>,
        inputs: &ContextInputs<'_>,
    ) -> Result<cedar_policy::Request, String> {
        let mut context: Vec<(String, RestrictedExpression)> = vec![
            ("now".into(), now(&inputs.now)?),
            (
                "listing".into(),
                RestrictedExpression::new_bool(inputs.listing),
            ),
        ];
        if let Some(kind) = inputs.approval {
            context.push((
                "approval".into(),
                RestrictedExpression::new_string(kind.to_string()),
            ));
        }
        if let Some(address) = inputs.address {
            context.push((
                "client_address".into(),
                RestrictedExpression::new_ip(address.to_string()),
            ));
        }
        if let (Target::Tool(name), Some(arguments)) = (target, inputs.arguments) {
            let ty = self
                .arguments
                .get(name)
                .ok_or("the tool is not in the policies' schema yet")?;
            context.push(("arguments".into(), ty.value(arguments)?));
        }
        let context = Context::from_pairs(context).map_err(|e| e.to_string())?;
        cedar_policy::Request::new(
            asked.principal.clone(),
            asked.action.clone(),
            asked.resource.clone(),
            context,
            None,
        )
        .map_err(|e| e.to_string())
    }

    /// The entities of `who` asking about `target`: kept from an earlier request of the same
    /// caller (every attribute equal) about the same item, or made now.
    fn asked(
        &self,
        catalog: &Catalog,
        plugin: &LoadedPlugin,
        target: Target<'_>,
        who: &Principal,
        claims: &[String],
    ) -> Result<Arc<Asked>, String> {
        let kind = match target {
            Target::Tool(_) => 0,
            Target::Prompt(_) => 1,
            Target::Resource(_) => 2,
            Target::Template(_) => 3,
        };
        let slot = recent_slot(who, claims, (kind, target.key()));
        let same = |a: &&Arc<Asked>| {
            a.target.0 == kind && a.target.1 == target.key() && a.caller.is(who, claims)
        };
        if let Some(found) = self
            .recent
            .lock()
            .get(&slot)
            .and_then(|v| v.iter().find(same))
        {
            return Ok(found.clone());
        }
        let principal = caller(who, claims, &self.types)?;
        let (action, resource) = match target {
            Target::Tool(name) => self
                .tools
                .get(name)
                .cloned()
                .ok_or("the tool is not in the policies' schema yet")?,
            target => item(catalog, plugin, target, &self.types)?,
        };
        let action_entity = self
            .actions
            .get(&action)
            .cloned()
            .ok_or("the action is not in the policies' schema yet")?;
        let asked = Arc::new(Asked {
            caller: CallerKey::of(who, claims),
            target: (kind, target.key().to_string()),
            principal: principal.uid(),
            action,
            resource: resource.uid(),
            entities: Entities::from_entities([principal, resource, action_entity], None)
                .map_err(|e| e.to_string())?,
            memo: Memo::default(),
        });
        let mut recent = self.recent.lock();
        if recent.len() >= RECENT {
            recent.clear();
        }
        recent.entry(slot).or_default().push(asked.clone());
        Ok(asked)
    }
}

fn strings<'a>(values: impl IntoIterator<Item = &'a String>) -> RestrictedExpression {
    RestrictedExpression::new_set(
        values
            .into_iter()
            .map(|s| RestrictedExpression::new_string(s.clone())),
    )
}

/// The caller as `Portcullis::Caller::"<issuer>|<subject>"` (for a token without a subject,
/// `client:<client id>`; a configured identity's issuer is `(configured)`).
fn caller(who: &Principal, claims: &[String], types: &Types) -> Result<Entity, String> {
    let issuer = who.issuer.as_deref().unwrap_or("(configured)");
    let name = match (&who.subject, &who.client_id) {
        (Some(s), _) => s.clone(),
        (None, Some(c)) => format!("client:{c}"),
        (None, None) => "anonymous".into(),
    };
    let mut attrs = HashMap::from([
        (
            "issuer".to_string(),
            RestrictedExpression::new_string(issuer.into()),
        ),
        ("scopes".to_string(), strings(&who.scopes)),
        (
            "credential".to_string(),
            RestrictedExpression::new_string(
                match who.credential {
                    None => "configured",
                    Some(crate::auth::Scheme::Bearer) => "bearer",
                    Some(crate::auth::Scheme::Dpop) => "dpop",
                }
                .into(),
            ),
        ),
    ]);
    if let Some(s) = &who.subject {
        attrs.insert(
            "subject".into(),
            RestrictedExpression::new_string(s.clone()),
        );
    }
    if let Some(c) = &who.client_id {
        attrs.insert(
            "client_id".into(),
            RestrictedExpression::new_string(c.clone()),
        );
    }
    let mut shown = Vec::new();
    for (name, text) in selected(who, claims) {
        let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let members: Vec<String> = match value {
            Value::Array(items) => items
                .into_iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .collect(),
            Value::String(s) => vec![s],
            Value::Null | Value::Object(_) => continue,
            other => vec![other.to_string()],
        };
        shown.push((name.clone(), strings(&members)));
    }
    attrs.insert(
        "claims".into(),
        RestrictedExpression::new_record(shown).map_err(|e| e.to_string())?,
    );
    Entity::new(
        Types::uid(&types.caller, &format!("{issuer}|{name}")),
        attrs,
        HashSet::new(),
    )
    .map_err(|e| e.to_string())
}

/// The action and the item entity of `target`.
fn item(
    catalog: &Catalog,
    plugin: &LoadedPlugin,
    target: Target<'_>,
    types: &Types,
) -> Result<(EntityUid, Entity), String> {
    let common = |scopes: &[String]| {
        HashMap::from([
            (
                "plugin".to_string(),
                RestrictedExpression::new_string(plugin.name.to_string()),
            ),
            ("scopes".to_string(), strings(scopes)),
        ])
    };
    let (action, kind, key, attrs) = match target {
        Target::Tool(name) => {
            let (_, tool) = catalog.tool(name).ok_or("no such tool")?;
            let mut attrs = common(&tool.required_scopes);
            let hint = |h: Option<bool>| RestrictedExpression::new_bool(h.unwrap_or(false));
            let hints = tool.annotations.as_ref();
            attrs.insert(
                "read_only".into(),
                hint(hints.and_then(|a| a.read_only_hint)),
            );
            attrs.insert(
                "destructive".into(),
                hint(hints.and_then(|a| a.destructive_hint)),
            );
            if let Some(rule) = plugin.approvals.get(name) {
                attrs.insert(
                    "approval_type".into(),
                    RestrictedExpression::new_string(rule.kind.clone()),
                );
            }
            (name.to_string(), &types.tool, name, attrs)
        }
        Target::Prompt(name) => {
            let (_, prompt) = catalog.prompt(name).ok_or("no such prompt")?;
            (
                "prompts/get".into(),
                &types.prompt,
                name,
                common(&prompt.required_scopes),
            )
        }
        Target::Resource(key) | Target::Template(key) => {
            let (_, scopes) = catalog.lookup(target).ok_or("no such resource")?;
            (
                "resources/read".into(),
                &types.resource,
                key,
                common(scopes),
            )
        }
    };
    let entity =
        Entity::new(Types::uid(kind, key), attrs, HashSet::new()).map_err(|e| e.to_string())?;
    Ok((Types::uid(&types.action, &action), entity))
}

/// `now` as policies see it (UTC).
fn now(now: &Now) -> Result<RestrictedExpression, String> {
    RestrictedExpression::new_record([
        ("unix".to_string(), RestrictedExpression::new_long(now.unix)),
        ("hour".to_string(), RestrictedExpression::new_long(now.hour)),
        (
            "minute".to_string(),
            RestrictedExpression::new_long(now.minute),
        ),
        (
            "weekday".to_string(),
            RestrictedExpression::new_long(now.weekday),
        ),
    ])
    .map_err(|e| e.to_string())
}

/// The type of the approval the call carried, if it did (the front puts the matching entry
/// in the caller's claims, #32).
pub fn approval_type(who: &Principal) -> Option<String> {
    let (_, text) = who
        .claims
        .iter()
        .find(|(name, _)| name == "authorization_details")?;
    let detail: Value = serde_json::from_str(text).ok()?;
    detail["type"].as_str().map(str::to_string)
}
