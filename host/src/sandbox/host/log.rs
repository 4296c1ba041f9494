//! The `portcullis:plugin/host` import: logs, progress and change notifications, forwarded
//! to the call's [`CallObserver`].

use std::sync::Arc;

use wasmtime::component::{HasData, Linker};

use crate::sandbox::CallObserver;
use crate::sandbox::bindings::host;
use crate::sandbox::state::HostState;

/// The `host` import's per-call context.
pub(crate) struct ObserverCtx(pub(crate) Arc<dyn CallObserver>);

/// Projects a store's state onto its [`ObserverCtx`].
struct HasObserver;

impl HasData for HasObserver {
    type Data<'a> = &'a mut ObserverCtx;
}

impl host::Host for ObserverCtx {
    async fn log(
        &mut self,
        level: host::LogLevel,
        logger: Option<String>,
        message: String,
    ) -> wasmtime::Result<()> {
        self.0.log(level, logger, message).await;
        Ok(())
    }

    async fn progress(
        &mut self,
        progress: f64,
        total: Option<f64>,
        message: Option<String>,
    ) -> wasmtime::Result<()> {
        self.0.progress(progress, total, message).await;
        Ok(())
    }

    async fn notify_lists_changed(&mut self, kinds: host::ListKinds) -> wasmtime::Result<()> {
        self.0.lists_changed(kinds);
        Ok(())
    }

    async fn notify_resource_updated(&mut self, uri: String) -> wasmtime::Result<()> {
        self.0.resource_updated(uri);
        Ok(())
    }
}

pub(super) fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    host::add_to_linker::<_, HasObserver>(linker, |s| &mut s.observer)
}
