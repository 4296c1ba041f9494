//! Rich Authorization Requests (RFC 9396) at the development AS: the approvals of single calls
//! the gateway's tools require (#32), asked for at `/authorize` (or pushed first, RFC 9126),
//! shown to the person in plain words, and carried by the token.
//!
//! Owns: which `authorization_details` types it grants (those of the approval rules in force
//! in the tenants' catalogs — declared by plugins or by the operator — with each tool's single
//! use and maximum age), checking requested details (a JSON array of objects of those types,
//! for one of the gateway's resources) and, when a person approves them, that they name that
//! person; the consent page's words for them, and pushed authorization requests (a
//! `request_uri` good for 60 s, once, for the client that pushed it). Must not: issue codes or
//! tokens (`mod.rs`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::Value;

use crate::oauth::approval::{Declared, DeclaredApprovals};

/// How long a pushed request's `request_uri` may be used.
pub(super) const PUSHED_TTL: Duration = Duration::from_secs(60);
/// Pushed requests kept at once.
const MAX_PUSHED: usize = 1000;
/// The longest `authorization_details` accepted, in bytes.
const MAX_DETAILS_BYTES: usize = 16 * 1024;

/// The types the development AS grants, and its pushed requests.
pub(super) struct Rar<P> {
    /// The approval rules in force, by tool.
    declared: DeclaredApprovals,
    pushed: Mutex<HashMap<String, (String, Instant, P)>>,
}

impl<P: Clone> Rar<P> {
    /// Grants the types of the rules `declared` returns (as they are at each request).
    pub(super) fn new(declared: DeclaredApprovals) -> Self {
        Self {
            declared,
            pushed: Mutex::new(HashMap::new()),
        }
    }

    /// The types, for the metadata.
    pub(super) fn types(&self) -> Vec<String> {
        let mut types: Vec<String> = (self.declared)().into_iter().map(|d| d.rule.kind).collect();
        types.sort();
        types.dedup();
        types
    }

    /// The types metadata of the rules in force (the RAR remediation draft's endpoint).
    pub(super) fn types_metadata(&self) -> serde_json::Map<String, Value> {
        crate::oauth::approval::types_metadata(&(self.declared)())
    }

    /// The rule of `tool` whose type is `kind`, if one is in force.
    fn rule(&self, kind: &str, tool: &str) -> Option<Declared> {
        (self.declared)()
            .into_iter()
            .find(|d| d.tool == tool && d.rule.kind == kind)
    }

    /// Requested `authorization_details` (JSON text), checked: an array of objects of a type
    /// granted here, each for `resource`. The error is the description of `invalid_authorization_details`.
    pub(super) fn check(&self, text: &str, resource: &str) -> Result<Value, String> {
        if text.len() > MAX_DETAILS_BYTES {
            return Err(format!(
                "authorization_details is longer than {MAX_DETAILS_BYTES} bytes"
            ));
        }
        let details: Value = serde_json::from_str(text)
            .map_err(|_| "authorization_details is not JSON".to_string())?;
        let entries = details
            .as_array()
            .filter(|a| !a.is_empty())
            .ok_or("authorization_details must be a non-empty array")?;
        let types = self.types();
        for entry in entries {
            let kind = entry["type"].as_str().ok_or("each entry needs a type")?;
            if !types.iter().any(|t| t == kind) {
                return Err(format!(
                    "authorization_details type `{kind}` is not granted here"
                ));
            }
            let for_resource = entry["locations"]
                .as_array()
                .is_some_and(|l| !l.is_empty() && l.iter().all(|x| x == resource));
            if !for_resource {
                return Err("each entry's locations must name the resource requested".into());
            }
        }
        Ok(details)
    }

    /// The details in plain words for the person approving them (HTML, escaped by `escape`):
    /// the tool's title, each bound argument and its value, on whose behalf, how often and
    /// for how long.
    pub(super) fn describe(&self, details: &Value, escape: impl Fn(&str) -> String) -> String {
        let mut out = String::from("<ul class=approvals>");
        for entry in details.as_array().into_iter().flatten() {
            let kind = entry["type"].as_str().unwrap_or_default();
            let tool = entry["tool"].as_str().unwrap_or_default();
            let declared = self.rule(kind, tool);
            let title = declared
                .as_ref()
                .and_then(|d| d.title.clone())
                .unwrap_or_else(|| tool.to_string());
            out.push_str(&format!(
                "<li><b class=tool>{}</b> (<code>{}</code>, approval type <code>{}</code>) with:<ul>",
                escape(&title),
                escape(tool),
                escape(kind)
            ));
            if let Some(args) = entry["arguments"].as_object() {
                for (name, value) in args {
                    let shown = value
                        .as_str()
                        .map_or_else(|| value.to_string(), str::to_string);
                    out.push_str(&format!(
                        "<li>{}: <b class=value>{}</b></li>",
                        escape(name),
                        escape(&shown)
                    ));
                }
            }
            if let Some(digest) = entry["arguments_digest"].as_str() {
                out.push_str(&format!(
                    "<li>exactly the arguments with digest <code>{}</code></li>",
                    escape(digest)
                ));
            }
            if let Some(subject) = entry["subject"].as_str() {
                out.push_str(&format!(
                    "<li>on behalf of <b class=subject>{}</b></li>",
                    escape(subject)
                ));
            }
            out.push_str("</ul>");
            if let Some(d) = declared {
                out.push_str(&format!(
                    "<p class=terms>{} Valid for {} s after approval.</p>",
                    if d.rule.single_use {
                        "Authorizes one call only."
                    } else {
                        "May be used for this call more than once."
                    },
                    d.rule.max_age_secs
                ));
            }
            out.push_str("</li>");
        }
        out.push_str("</ul>");
        out
    }

    /// Keep pushed request `params` of `client_id`; its `request_uri`.
    pub(super) fn push(&self, client_id: &str, params: P) -> Result<String, String> {
        let mut pushed = self.pushed.lock();
        pushed.retain(|_, (_, at, _)| at.elapsed() < PUSHED_TTL);
        if pushed.len() >= MAX_PUSHED {
            return Err("too many pushed requests right now; retry shortly".into());
        }
        let mut b = [0u8; 24];
        rand::fill(&mut b);
        let uri = format!("urn:ietf:params:oauth:request_uri:{}", hex::encode(b));
        pushed.insert(uri.clone(), (client_id.to_string(), Instant::now(), params));
        Ok(uri)
    }

    /// The pushed request at `uri`, once, for `client_id` only.
    pub(super) fn take(&self, uri: &str, client_id: &str) -> Option<P> {
        let (owner, at, params) = self.pushed.lock().remove(uri)?;
        (owner == client_id && at.elapsed() < PUSHED_TTL).then_some(params)
    }
}

/// Whether `user` may approve `details`: every entry naming a subject names this one (an
/// approval of someone else's call is theirs to give).
pub(super) fn approvable_by(details: &Value, user: &str) -> bool {
    details
        .as_array()
        .into_iter()
        .flatten()
        .all(|entry| entry.get("subject").is_none_or(|s| s == user))
}
