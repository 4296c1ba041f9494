//! HTTP to the downstream services the operator granted this plugin, through the gateway.
//!
//! The plugin names a logical service and a path; the gateway confines the request to the
//! service's base URL, attaches the credential it obtained for this caller (the plugin never
//! sees it) and enforces the egress rules.
//!
//! ```no_run
//! # use portcullis_sdk::prelude::*;
//! # fn f() -> Result<()> {
//! let notes: serde_json::Value = portcullis_sdk::downstream::get("notes", "/notes")?
//!     .success()?
//!     .json()?;
//! # Ok(()) }
//! ```

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::portcullis::plugin::downstream as wit;
use crate::error::{Error, Result};

/// Why a downstream request did not get an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownstreamError {
    /// No service with this name is configured for the tenant.
    UnknownService(String),
    /// The service exists but this plugin was not granted it.
    NotGranted(String),
    /// The gateway could not obtain a credential for the service.
    Credential(String),
    /// The egress rules refused the request.
    Blocked(String),
    /// No answer within the service's timeout.
    Timeout,
    /// The request or the answer exceeded the service's size limit.
    TooLarge,
    /// Connection or protocol failure.
    Transport(String),
}

impl fmt::Display for DownstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownService(m) | Self::NotGranted(m) => {
                write!(f, "the gateway is not configured for this service: {m}")
            }
            Self::Credential(m) => write!(f, "could not get a credential for the service: {m}"),
            Self::Blocked(m) => write!(f, "the request was blocked: {m}"),
            Self::Timeout => f.write_str("the service did not answer in time"),
            Self::TooLarge => f.write_str("the request or the answer is too large"),
            Self::Transport(m) => write!(f, "the service is unreachable: {m}"),
        }
    }
}

impl std::error::Error for DownstreamError {}

impl From<wit::Error> for DownstreamError {
    fn from(e: wit::Error) -> Self {
        match e {
            wit::Error::UnknownService(m) => Self::UnknownService(m),
            wit::Error::NotGranted(m) => Self::NotGranted(m),
            wit::Error::Credential(m) => Self::Credential(m),
            wit::Error::Blocked(m) => Self::Blocked(m),
            wit::Error::Timeout => Self::Timeout,
            wit::Error::TooLarge => Self::TooLarge,
            wit::Error::Transport(m) => Self::Transport(m),
        }
    }
}

impl From<DownstreamError> for wit::Error {
    fn from(e: DownstreamError) -> Self {
        match e {
            DownstreamError::UnknownService(m) => Self::UnknownService(m),
            DownstreamError::NotGranted(m) => Self::NotGranted(m),
            DownstreamError::Credential(m) => Self::Credential(m),
            DownstreamError::Blocked(m) => Self::Blocked(m),
            DownstreamError::Timeout => Self::Timeout,
            DownstreamError::TooLarge => Self::TooLarge,
            DownstreamError::Transport(m) => Self::Transport(m),
        }
    }
}

/// A request to a downstream service.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Request {
    /// `method path` (the path and query, relative to the service's base URL).
    pub fn new(method: &str, path: &str) -> Self {
        Self {
            method: method.into(),
            path: path.into(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// A GET.
    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    /// A POST.
    pub fn post(path: &str) -> Self {
        Self::new("POST", path)
    }

    /// A PUT.
    pub fn put(path: &str) -> Self {
        Self::new("PUT", path)
    }

    /// A DELETE.
    pub fn delete(path: &str) -> Self {
        Self::new("DELETE", path)
    }

    /// Add a header (credential and proxy headers are dropped by the gateway).
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// A body with its content type.
    #[must_use]
    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self.header("content-type", content_type)
    }

    /// A JSON body.
    pub fn json<T: Serialize>(self, value: &T) -> Result<Self> {
        Ok(self.body("application/json", serde_json::to_vec(value)?))
    }

    /// The method.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The path and query.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The headers.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The body, if any.
    pub fn body_bytes(&self) -> Option<&[u8]> {
        self.body.as_deref()
    }

    /// Send it to `service`.
    pub fn send(self, service: &str) -> Result<Response, DownstreamError> {
        let request = wit::Request {
            method: self.method,
            path: self.path,
            headers: self.headers,
            body: self.body,
        };
        crate::sys::fetch(service, &request)
            .map(Response::from_wit)
            .map_err(DownstreamError::from)
    }

    pub(crate) fn from_wit(r: &wit::Request) -> Self {
        Self {
            method: r.method.clone(),
            path: r.path.clone(),
            headers: r.headers.clone(),
            body: r.body.clone(),
        }
    }
}

/// `GET path` on `service`.
pub fn get(service: &str, path: &str) -> Result<Response, DownstreamError> {
    Request::get(path).send(service)
}

/// A downstream answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// The headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response (for test hosts).
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A JSON response (for test hosts).
    pub fn with_json(status: u16, value: &serde_json::Value) -> Self {
        let mut r = Self::new(status, value.to_string());
        r.headers
            .push(("content-type".into(), "application/json".into()));
        r
    }

    fn from_wit(r: wit::Response) -> Self {
        Self {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }
    }

    pub(crate) fn into_wit(self) -> wit::Response {
        wit::Response {
            status: self.status,
            headers: self.headers,
            body: self.body,
        }
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::failed(format!("the service answered with invalid JSON: {e}")))
    }

    /// This response if its status is 2xx, else a failure naming the status and the start
    /// of the body (what a model needs to adapt).
    pub fn success(self) -> Result<Self> {
        if (200..300).contains(&self.status) {
            return Ok(self);
        }
        let text = self.text();
        let shown: String = text.chars().take(300).collect();
        Err(Error::failed(format!(
            "the service answered HTTP {}: {shown}",
            self.status
        )))
    }
}
