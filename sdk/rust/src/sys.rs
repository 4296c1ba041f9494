//! The host imports, reached through one place: the component's imports in WebAssembly, the
//! thread's [`crate::testing::TestHost`] natively (so `cargo test` of plugin code never calls
//! an import that is not there).

use crate::bindings::portcullis::plugin::{downstream, host};

#[cfg(target_arch = "wasm32")]
pub(crate) fn log(level: host::LogLevel, logger: Option<&str>, message: &str) {
    host::log(level, logger, message);
}

#[cfg(target_arch = "wasm32")]
pub(crate) fn progress(progress: f64, total: Option<f64>, message: Option<&str>) {
    host::progress(progress, total, message);
}

#[cfg(target_arch = "wasm32")]
pub(crate) fn notify_lists_changed(kinds: host::ListKinds) {
    host::notify_lists_changed(kinds);
}

#[cfg(target_arch = "wasm32")]
pub(crate) fn notify_resource_updated(uri: &str) {
    host::notify_resource_updated(uri);
}

#[cfg(target_arch = "wasm32")]
pub(crate) fn fetch(
    service: &str,
    request: &downstream::Request,
) -> Result<downstream::Response, downstream::Error> {
    downstream::fetch(service, request)
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) use crate::testing::native::{
    fetch, log, notify_lists_changed, notify_resource_updated, progress,
};

#[cfg(not(target_arch = "wasm32"))]
const _: fn() = || {
    // The native stand-ins have the imports' signatures.
    let _: fn(host::LogLevel, Option<&str>, &str) = log;
    let _: fn(&str, &downstream::Request) -> Result<downstream::Response, downstream::Error> =
        fetch;
};
