//! Write [Portcullis](https://github.com/portcullis-mcp/portcullis) gateway plugins as typed
//! Rust functions.
//!
//! A plugin is a WebAssembly component the gateway runs in a sandbox, once per call. With this
//! crate a tool is a function from a `Deserialize + JsonSchema` argument type to an output;
//! the tool's `inputSchema` (and, for [`Json`] outputs, its `outputSchema`) are derived from
//! the types, arguments are deserialised before the function runs (bad ones become an
//! `isError` result naming the problem), and results become MCP content.
//!
//! ```no_run
//! use portcullis_sdk::prelude::*;
//!
//! /// Arguments of `hello.greet`.
//! #[derive(Deserialize, JsonSchema)]
//! #[serde(deny_unknown_fields)]
//! struct Greet {
//!     /// Who to greet
//!     name: String,
//! }
//!
//! fn greet(_ctx: &Context, args: Greet) -> Result<String> {
//!     portcullis_sdk::log::info(&format!("greeting {}", args.name));
//!     Ok(format!("Hello, {}!", args.name))
//! }
//!
//! fn plugin() -> Plugin {
//!     Plugin::new().tool(
//!         Tool::new("hello.greet", greet)
//!             .description("Say hello to someone by name.")
//!             .scopes(["mcp:tools"])
//!             .read_only(),
//!     )
//! }
//!
//! portcullis_sdk::export!(plugin);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; test natively with
//! `cargo test`, calling tools through [`testing::TestHost`] (host imports — logs, progress,
//! `downstream` — are answered by the test host instead of aborting the test binary).
//!
//! Modules: [`tool`] (tools and their outputs), [`resource`], [`prompt`], [`context`] (who
//! is calling, configuration, asking the client for input), [`downstream`] (HTTP to the
//! services the operator granted), [`log`] (logs, progress, change notifications),
//! [`testing`] (the native test host). Must not: hold state between calls (each call runs
//! in a fresh instance) or see any token (the gateway never passes one).

#![warn(missing_docs)]

/// The generated bindings of the `portcullis:plugin` WIT package (world `any-plugin`: every
/// export; a plugin that declares no task tools or approvals answers the `tasks` and
/// `approvals` exports with none).
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "any-plugin",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_full_plugin",
        default_bindings_module: "portcullis_sdk::bindings",
    });
}

/// The `title`, `description` and `scopes` builder methods of an item with fields of those
/// names (`Option<String>`, `String`, `Vec<String>`).
macro_rules! item_setters {
    ($what:literal) => {
        /// A human-readable title.
        #[must_use]
        pub fn title(mut self, title: &str) -> Self {
            self.title = Some(title.into());
            self
        }

        #[doc = concat!("What the ", $what, " does, for the model.")]
        #[must_use]
        pub fn description(mut self, description: &str) -> Self {
            self.description = description.into();
            self
        }

        #[doc = concat!("Scopes a caller's token must carry to use the ", $what, " (the gateway checks them; the operator may override them).")]
        #[must_use]
        pub fn scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
            self.scopes = scopes.into_iter().map(Into::into).collect();
            self
        }
    };
}

pub mod context;
pub mod downstream;
mod error;
mod guest;
pub mod log;
pub mod prompt;
pub mod resource;
mod sys;
pub mod testing;
pub mod tool;
#[cfg(not(target_arch = "wasm32"))]
mod validate;

pub use context::{ClientFeatures, Context};
pub use error::{Error, InputNeeded, Result};
pub use prompt::{Message, Prompt};
pub use resource::{Contents, Resource, ResourceTemplate};
pub use tool::{Approval, Content, IntoOutput, Json, NoArgs, Output, Tool};

/// Everything a plugin usually needs, plus the derive macros for argument types.
pub mod prelude {
    pub use crate::tool::{TaskInput, TaskSupport};
    pub use crate::{
        Approval, ClientFeatures, Content, Contents, Context, Error, Json, Message, NoArgs, Output,
        Plugin, Prompt, Resource, ResourceTemplate, Result, Tool,
    };
    pub use schemars::JsonSchema;
    pub use serde::{Deserialize, Serialize};
}

#[doc(hidden)]
pub mod __private {
    pub use crate::guest::Build;
    pub use schemars;
}

/// What a plugin offers: its tools, resources, resource templates and prompts.
///
/// Built by the function given to [`export!`] on every call (each call runs in a fresh
/// instance); building only collects definitions, so keep it cheap and free of side effects.
#[derive(Default)]
pub struct Plugin {
    pub(crate) tools: Vec<Tool>,
    pub(crate) resources: Vec<Resource>,
    pub(crate) templates: Vec<ResourceTemplate>,
    pub(crate) prompts: Vec<Prompt>,
}

impl Plugin {
    /// A plugin offering nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a tool.
    #[must_use]
    pub fn tool(mut self, tool: Tool) -> Self {
        self.tools.push(tool);
        self
    }

    /// Add a resource with a fixed URI.
    #[must_use]
    pub fn resource(mut self, resource: Resource) -> Self {
        self.resources.push(resource);
        self
    }

    /// Add a resource template (URIs matching an RFC 6570 template).
    #[must_use]
    pub fn template(mut self, template: ResourceTemplate) -> Self {
        self.templates.push(template);
        self
    }

    /// Add a prompt.
    #[must_use]
    pub fn prompt(mut self, prompt: Prompt) -> Self {
        self.prompts.push(prompt);
        self
    }

    /// The tool definitions as the gateway sees them (name, schemas, scopes).
    pub fn describe_tools(&self) -> Vec<bindings::exports::portcullis::plugin::tools::Tool> {
        self.tools.iter().map(Tool::describe).collect()
    }

    /// The tools that run as MCP Tasks, as the `tasks` export describes them.
    pub fn describe_task_tools(
        &self,
    ) -> Vec<bindings::exports::portcullis::plugin::tasks::TaskTool> {
        self.tools.iter().filter_map(Tool::describe_task).collect()
    }

    /// The tools a person must approve call by call, as the `approvals` export describes them.
    pub fn describe_approval_rules(
        &self,
    ) -> Vec<bindings::exports::portcullis::plugin::approvals::ApprovalRule> {
        self.tools
            .iter()
            .filter_map(Tool::describe_approval)
            .collect()
    }
}

/// Export the plugin built by `$build` (a `fn() -> Plugin`) as the component's
/// implementation of the `portcullis:plugin` world. Use it once, at the crate root.
#[macro_export]
macro_rules! export {
    ($build:path) => {
        #[doc(hidden)]
        pub struct __PortcullisPlugin;

        impl $crate::__private::Build for __PortcullisPlugin {
            fn build() -> $crate::Plugin {
                $build()
            }
        }

        #[cfg(target_arch = "wasm32")]
        $crate::bindings::__export_full_plugin!(__PortcullisPlugin with_types_in $crate::bindings);
    };
}
