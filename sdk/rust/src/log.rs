//! Logging to the client and the gateway, and change notifications.
//!
//! A log line goes to the client as `notifications/message` if it asked for that level, and
//! to the gateway's own log. Never log secrets or personal data.

use crate::bindings::portcullis::plugin::host;

pub use host::LogLevel as Level;

/// Log `message` at `level` under `logger`.
pub fn log(level: Level, logger: Option<&str>, message: &str) {
    crate::sys::log(level, logger, message);
}

/// Log at debug level.
pub fn debug(message: &str) {
    log(Level::Debug, None, message);
}

/// Log at info level.
pub fn info(message: &str) {
    log(Level::Info, None, message);
}

/// Log at notice level.
pub fn notice(message: &str) {
    log(Level::Notice, None, message);
}

/// Log at warning level.
pub fn warning(message: &str) {
    log(Level::Warning, None, message);
}

/// Log at error level.
pub fn error(message: &str) {
    log(Level::Error, None, message);
}

/// Tell connected clients that this plugin's tool, prompt or resource lists changed.
pub fn lists_changed(tools: bool, prompts: bool, resources: bool) {
    let mut kinds = host::ListKinds::empty();
    kinds.set(host::ListKinds::TOOLS, tools);
    kinds.set(host::ListKinds::PROMPTS, prompts);
    kinds.set(host::ListKinds::RESOURCES, resources);
    crate::sys::notify_lists_changed(kinds);
}

/// Tell subscribed clients that the resource at `uri` changed.
pub fn resource_updated(uri: &str) {
    crate::sys::notify_resource_updated(uri);
}
