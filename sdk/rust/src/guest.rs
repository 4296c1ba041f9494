//! The component's exports, implemented once for every plugin: each call builds the plugin's
//! definitions and dispatches to the matching handler, turning SDK errors into the WIT ones.

use crate::Plugin;
use crate::bindings::exports::portcullis::plugin::{
    approvals, completion, prompts, resources, tasks, tools,
};
use crate::bindings::portcullis::plugin::types::{CallContext, Continuation};
use crate::context::Context;
use crate::error::Error;
use crate::resource::fixed;

/// Implemented by [`crate::export!`] for the plugin's marker type.
pub trait Build {
    /// The plugin's definitions.
    fn build() -> Plugin;
}

/// Run tool `name` of `plugin`.
pub(crate) fn call_tool(
    plugin: &Plugin,
    ctx: CallContext,
    name: &str,
    arguments: &str,
    continuation: Option<Continuation>,
) -> Result<tools::CallOutcome, tools::ToolError> {
    let tool = plugin
        .tools
        .iter()
        .find(|t| t.name == name)
        .ok_or(tools::ToolError::UnknownTool)?;
    let ctx = Context::new(ctx, continuation);
    match (tool.handler)(&ctx, arguments) {
        Ok(result) => Ok(tools::CallOutcome::Done(result)),
        Err(Error::NeedInput(n)) => Ok(tools::CallOutcome::InputRequired(n.into_wit())),
        Err(Error::InvalidArguments(m)) => Err(tools::ToolError::InvalidArguments(m)),
        Err(e) => Err(tools::ToolError::Failed(e.to_string())),
    }
}

impl<T: Build> tools::Guest for T {
    fn list_tools() -> Vec<tools::Tool> {
        T::build().describe_tools()
    }

    fn call_tool(
        ctx: CallContext,
        name: String,
        arguments: String,
        continuation: Option<Continuation>,
    ) -> Result<tools::CallOutcome, tools::ToolError> {
        call_tool(&T::build(), ctx, &name, &arguments, continuation)
    }
}

impl<T: Build> tasks::Guest for T {
    fn task_tools() -> Vec<tasks::TaskTool> {
        T::build().describe_task_tools()
    }
}

impl<T: Build> approvals::Guest for T {
    fn approval_rules() -> Vec<approvals::ApprovalRule> {
        T::build().describe_approval_rules()
    }
}

/// Read the resource at `uri` of `plugin` (a fixed one, else the first matching template).
pub(crate) fn read_resource(
    plugin: &Plugin,
    ctx: CallContext,
    uri: &str,
    continuation: Option<Continuation>,
) -> Result<resources::ReadOutcome, resources::ResourceError> {
    let ctx = Context::new(ctx, continuation);
    let read = if let Some(r) = plugin.resources.iter().find(|r| r.uri == uri) {
        (r.reader)(&ctx, &fixed(uri))
    } else if let Some((t, vars)) = plugin
        .templates
        .iter()
        .find_map(|t| t.matches(uri).map(|v| (t, v)))
    {
        (t.reader)(&ctx, &vars)
    } else {
        return Err(resources::ResourceError::NotFound);
    };
    match read {
        Ok(contents) => Ok(resources::ReadOutcome::Done(
            contents.into_iter().map(|c| c.into_wit(uri)).collect(),
        )),
        Err(Error::NeedInput(n)) => Ok(resources::ReadOutcome::InputRequired(n.into_wit())),
        Err(Error::NotFound) => Err(resources::ResourceError::NotFound),
        Err(e) => Err(resources::ResourceError::Failed(e.to_string())),
    }
}

impl<T: Build> resources::Guest for T {
    fn list_resources() -> Vec<resources::Resource> {
        T::build().resources.iter().map(|r| r.describe()).collect()
    }

    fn list_resource_templates() -> Vec<resources::ResourceTemplate> {
        T::build().templates.iter().map(|t| t.describe()).collect()
    }

    fn read_resource(
        ctx: CallContext,
        uri: String,
        continuation: Option<Continuation>,
    ) -> Result<resources::ReadOutcome, resources::ResourceError> {
        read_resource(&T::build(), ctx, &uri, continuation)
    }
}

/// Render prompt `name` of `plugin`.
pub(crate) fn get_prompt(
    plugin: &Plugin,
    ctx: CallContext,
    name: &str,
    arguments: &[(String, String)],
    continuation: Option<Continuation>,
) -> Result<prompts::GetOutcome, prompts::PromptError> {
    let prompt = plugin
        .prompts
        .iter()
        .find(|p| p.name == name)
        .ok_or(prompts::PromptError::UnknownPrompt)?;
    let ctx = Context::new(ctx, continuation);
    match (prompt.render)(&ctx, arguments) {
        Ok(messages) => Ok(prompts::GetOutcome::Done(prompts::PromptResult {
            description: None,
            messages: messages.into_iter().map(|m| m.into_wit()).collect(),
        })),
        Err(Error::NeedInput(n)) => Ok(prompts::GetOutcome::InputRequired(n.into_wit())),
        Err(Error::InvalidArguments(m)) => Err(prompts::PromptError::InvalidArguments(m)),
        Err(e) => Err(prompts::PromptError::Failed(e.to_string())),
    }
}

impl<T: Build> prompts::Guest for T {
    fn list_prompts() -> Vec<prompts::Prompt> {
        T::build().prompts.iter().map(|p| p.describe()).collect()
    }

    fn get_prompt(
        ctx: CallContext,
        name: String,
        arguments: Vec<(String, String)>,
        continuation: Option<Continuation>,
    ) -> Result<prompts::GetOutcome, prompts::PromptError> {
        get_prompt(&T::build(), ctx, &name, &arguments, continuation)
    }
}

/// Most completion values returned.
const MAX_COMPLETIONS: usize = 100;

impl<T: Build> completion::Guest for T {
    fn complete(
        ctx: CallContext,
        reference: completion::Reference,
        argument_name: String,
        argument_value: String,
        _context_arguments: Vec<(String, String)>,
    ) -> Result<completion::CompletionResult, String> {
        Ok(complete(
            &T::build(),
            ctx,
            &reference,
            &argument_name,
            &argument_value,
        ))
    }
}

/// The completions `plugin` offers for `argument_name` of `reference`, at most
/// [`MAX_COMPLETIONS`].
pub(crate) fn complete(
    plugin: &Plugin,
    ctx: CallContext,
    reference: &completion::Reference,
    argument_name: &str,
    argument_value: &str,
) -> completion::CompletionResult {
    let completers = match reference {
        completion::Reference::Prompt(name) => plugin
            .prompts
            .iter()
            .find(|p| &p.name == name)
            .map(|p| &p.completers),
        completion::Reference::ResourceTemplate(template) => plugin
            .templates
            .iter()
            .find(|t| &t.template == template)
            .map(|t| &t.completers),
    };
    let ctx = Context::new(ctx, None);
    let mut values = completers
        .and_then(|c| c.iter().find(|(name, _)| *name == argument_name))
        .map(|(_, complete)| complete(&ctx, argument_value))
        .unwrap_or_default();
    let total = values.len();
    values.truncate(MAX_COMPLETIONS);
    completion::CompletionResult {
        has_more: total > values.len(),
        total: u32::try_from(total).ok(),
        values,
    }
}
