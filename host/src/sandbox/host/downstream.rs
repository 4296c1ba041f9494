//! The `portcullis:plugin/downstream` import: a plugin's only way out, forwarded to the
//! call's [`Egress`] (prepared for the call by its provider, the `downstream` module).

use std::sync::Arc;

use wasmtime::component::{HasData, Linker};

use crate::sandbox::Egress;
use crate::sandbox::bindings::downstream;
use crate::sandbox::state::HostState;

/// The `downstream` import's per-call context.
pub(crate) struct EgressCtx(pub(crate) Arc<dyn Egress>);

/// Projects a store's state onto its [`EgressCtx`].
struct HasEgress;

impl HasData for HasEgress {
    type Data<'a> = &'a mut EgressCtx;
}

impl downstream::Host for EgressCtx {
    async fn fetch(
        &mut self,
        service: String,
        request: downstream::Request,
    ) -> wasmtime::Result<Result<downstream::Response, downstream::Error>> {
        Ok(self.0.fetch(service, request).await)
    }
}

pub(super) fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    downstream::add_to_linker::<_, HasEgress>(linker, |s| &mut s.egress)
}
