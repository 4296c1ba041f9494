//! What a tool, resource or prompt returns when it cannot finish: a failure the model sees, an
//! argument problem, or a request for input from the client.

use std::fmt;

use crate::bindings::portcullis::plugin::types;
use crate::downstream::DownstreamError;

/// The result of a tool, resource reader or prompt.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a call did not produce its result.
#[derive(Debug)]
pub enum Error {
    /// The arguments are unusable; the model sees the message (an `isError` result) and can
    /// correct itself.
    InvalidArguments(String),
    /// The call failed; the model sees the message (an `isError` result).
    Failed(String),
    /// The item (a resource URI) does not exist.
    NotFound,
    /// The call needs input from the client first (see [`crate::Context::elicit`]); the
    /// gateway asks and calls again with the answers.
    NeedInput(InputNeeded),
}

/// Requests for client input, and state to get back with the answers.
#[derive(Debug, Clone)]
pub struct InputNeeded {
    pub(crate) requests: Vec<types::KeyedRequest>,
    pub(crate) state: Option<String>,
}

impl InputNeeded {
    /// The request keys, in order.
    pub fn keys(&self) -> Vec<&str> {
        self.requests.iter().map(|r| r.key.as_str()).collect()
    }

    /// The state the plugin kept for the next round ([`crate::Context::keep_state`]).
    pub fn state(&self) -> Option<&str> {
        self.state.as_deref()
    }

    pub(crate) fn into_wit(self) -> types::InputRequired {
        types::InputRequired {
            requests: self.requests,
            state: self.state,
        }
    }
}

impl Error {
    /// A failure the model sees.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::Failed(message.into())
    }

    /// An argument problem the model sees.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidArguments(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidArguments(m) => write!(f, "invalid arguments: {m}"),
            Self::Failed(m) => f.write_str(m),
            Self::NotFound => f.write_str("not found"),
            Self::NeedInput(n) => write!(f, "needs input from the client: {}", n.keys().join(", ")),
        }
    }
}

impl std::error::Error for Error {}

impl From<DownstreamError> for Error {
    fn from(e: DownstreamError) -> Self {
        Self::Failed(e.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self::Failed(format!("invalid JSON: {e}"))
    }
}
