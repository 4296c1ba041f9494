//! Rust bindings generated from `wit/plugin.wit`.
//!
//! The host links the `any-plugin` world's imports once; exports are looked up per interface
//! (see [`super::Exports`]) so a plugin may export only `tools` and still load.

wasmtime::component::bindgen!({
    world: "any-plugin",
    path: "../wit",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub(crate) use self::exports::portcullis::plugin::{
    approvals, completion, prompts, resources, tasks, tools,
};
pub(crate) use self::portcullis::plugin::{downstream, host, types};
