//! Prompts: a name, typed arguments (strings, as MCP passes them) and the messages they
//! produce.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::bindings::exports::portcullis::plugin::prompts as wit;
use crate::bindings::portcullis::plugin::types;
use crate::context::Context;
use crate::error::{Error, Result};

type Render = Box<dyn Fn(&Context, &[(String, String)]) -> Result<Vec<Message>>>;
type Completer = Box<dyn Fn(&Context, &str) -> Vec<String>>;

/// One message of a prompt.
pub struct Message(wit::PromptMessage);

impl Message {
    /// A user message.
    pub fn user(text: impl Into<String>) -> Self {
        Self(wit::PromptMessage {
            role: wit::Role::User,
            content: types::Content::Text(text.into()),
        })
    }

    /// An assistant message.
    pub fn assistant(text: impl Into<String>) -> Self {
        Self(wit::PromptMessage {
            role: wit::Role::Assistant,
            content: types::Content::Text(text.into()),
        })
    }

    pub(crate) fn into_wit(self) -> wit::PromptMessage {
        self.0
    }
}

/// One prompt.
pub struct Prompt {
    pub(crate) name: String,
    title: Option<String>,
    description: String,
    arguments: fn() -> Vec<wit::PromptArgument>,
    scopes: Vec<String>,
    pub(crate) render: Render,
    pub(crate) completers: Vec<(String, Completer)>,
}

impl Prompt {
    /// A prompt named `name` whose arguments are `A`'s fields (strings or optional strings;
    /// doc comments become their descriptions), rendered by `render`.
    pub fn new<A, F>(name: &str, render: F) -> Self
    where
        A: DeserializeOwned + JsonSchema + 'static,
        F: Fn(&Context, A) -> Result<Vec<Message>> + 'static,
    {
        let render: Render = Box::new(move |ctx, arguments| {
            let object: serde_json::Map<String, Value> = arguments
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            let args: A = serde_json::from_value(Value::Object(object))
                .map_err(|e| Error::InvalidArguments(e.to_string()))?;
            render(ctx, args)
        });
        Self {
            name: name.into(),
            title: None,
            description: String::new(),
            arguments: arguments_of::<A>,
            scopes: Vec::new(),
            render,
            completers: Vec::new(),
        }
    }

    item_setters!("prompt");

    /// Suggest values for the argument `argument` (`completion/complete`).
    #[must_use]
    pub fn complete(
        mut self,
        argument: &str,
        completer: impl Fn(&Context, &str) -> Vec<String> + 'static,
    ) -> Self {
        self.completers.push((argument.into(), Box::new(completer)));
        self
    }

    pub(crate) fn describe(&self) -> wit::Prompt {
        wit::Prompt {
            name: self.name.clone(),
            title: self.title.clone(),
            description: self.description.clone(),
            arguments: (self.arguments)(),
            required_scopes: self.scopes.clone(),
        }
    }
}

/// A prompt's arguments, from the properties of `A`'s schema.
fn arguments_of<A: JsonSchema>() -> Vec<wit::PromptArgument> {
    let schema = serde_json::to_value(schemars::schema_for!(A)).unwrap_or_default();
    let required: Vec<&str> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    schema["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, property)| wit::PromptArgument {
            name: name.clone(),
            title: property["title"].as_str().map(str::to_string),
            description: property["description"].as_str().map(str::to_string),
            required: required.contains(&name.as_str()),
        })
        .collect()
}
