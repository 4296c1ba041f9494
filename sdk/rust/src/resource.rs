//! Resources (fixed URIs) and resource templates (RFC 6570 `{var}` URIs), each with a reader.

use crate::bindings::exports::portcullis::plugin::resources as wit;
use crate::bindings::portcullis::plugin::types;
use crate::context::Context;
use crate::error::Result;

type Reader = Box<dyn Fn(&Context, &UriVars) -> Result<Vec<Contents>>>;
type Completer = Box<dyn Fn(&Context, &str) -> Vec<String>>;

/// The body of a resource read: text or bytes, with an optional media type.
pub struct Contents {
    body: types::ResourceBody,
    mime_type: Option<String>,
}

impl Contents {
    /// Text contents.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            body: types::ResourceBody::Text(text.into()),
            mime_type: None,
        }
    }

    /// Binary contents.
    pub fn blob(bytes: Vec<u8>) -> Self {
        Self {
            body: types::ResourceBody::Blob(bytes),
            mime_type: None,
        }
    }

    /// JSON contents (`application/json`).
    pub fn json<T: serde::Serialize>(value: &T) -> Result<Self> {
        Ok(Self::text(serde_json::to_string(value)?).mime_type("application/json"))
    }

    /// Set the media type.
    #[must_use]
    pub fn mime_type(mut self, mime_type: &str) -> Self {
        self.mime_type = Some(mime_type.into());
        self
    }

    pub(crate) fn into_wit(self, uri: &str) -> types::ResourceContents {
        types::ResourceContents {
            uri: uri.into(),
            mime_type: self.mime_type,
            body: self.body,
        }
    }
}

/// The URI being read and, for a template, the values of its variables.
pub struct UriVars {
    uri: String,
    vars: Vec<(String, String)>,
}

impl UriVars {
    /// The URI being read.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The value of the template variable `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

struct Meta {
    name: String,
    title: Option<String>,
    description: Option<String>,
    mime_type: Option<String>,
    scopes: Vec<String>,
}

macro_rules! meta_setters {
    () => {
        /// A human-readable title.
        #[must_use]
        pub fn title(mut self, title: &str) -> Self {
            self.meta.title = Some(title.into());
            self
        }

        /// What it contains.
        #[must_use]
        pub fn description(mut self, description: &str) -> Self {
            self.meta.description = Some(description.into());
            self
        }

        /// Its media type.
        #[must_use]
        pub fn mime_type(mut self, mime_type: &str) -> Self {
            self.meta.mime_type = Some(mime_type.into());
            self
        }

        /// Scopes a caller must hold to list or read it.
        #[must_use]
        pub fn scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
            self.meta.scopes = scopes.into_iter().map(Into::into).collect();
            self
        }
    };
}

fn meta(name: &str) -> Meta {
    Meta {
        name: name.into(),
        title: None,
        description: None,
        mime_type: None,
        scopes: Vec::new(),
    }
}

/// A resource with a fixed URI.
pub struct Resource {
    pub(crate) uri: String,
    meta: Meta,
    pub(crate) reader: Reader,
}

impl Resource {
    /// The resource at `uri`, called `name`, read by `reader`.
    pub fn new(
        uri: &str,
        name: &str,
        reader: impl Fn(&Context) -> Result<Contents> + 'static,
    ) -> Self {
        Self {
            uri: uri.into(),
            meta: meta(name),
            reader: Box::new(move |ctx, _| reader(ctx).map(|c| vec![c])),
        }
    }

    meta_setters!();

    pub(crate) fn describe(&self) -> wit::Resource {
        wit::Resource {
            uri: self.uri.clone(),
            name: self.meta.name.clone(),
            title: self.meta.title.clone(),
            description: self.meta.description.clone(),
            mime_type: self.meta.mime_type.clone(),
            size: None,
            required_scopes: self.meta.scopes.clone(),
        }
    }
}

/// Resources whose URIs match a template such as `notes://{id}`.
pub struct ResourceTemplate {
    pub(crate) template: String,
    meta: Meta,
    pub(crate) reader: Reader,
    pub(crate) completers: Vec<(String, Completer)>,
}

impl ResourceTemplate {
    /// URIs matching `template` (simple `{var}` expressions, each matching one path segment),
    /// read by `reader`, which gets the variables' values.
    pub fn new(
        template: &str,
        name: &str,
        reader: impl Fn(&Context, &UriVars) -> Result<Contents> + 'static,
    ) -> Self {
        Self {
            template: template.into(),
            meta: meta(name),
            reader: Box::new(move |ctx, vars| reader(ctx, vars).map(|c| vec![c])),
            completers: Vec::new(),
        }
    }

    meta_setters!();

    /// Suggest values for the variable `var` (`completion/complete`), given what the user
    /// typed so far.
    #[must_use]
    pub fn complete(
        mut self,
        var: &str,
        completer: impl Fn(&Context, &str) -> Vec<String> + 'static,
    ) -> Self {
        self.completers.push((var.into(), Box::new(completer)));
        self
    }

    pub(crate) fn describe(&self) -> wit::ResourceTemplate {
        wit::ResourceTemplate {
            uri_template: self.template.clone(),
            name: self.meta.name.clone(),
            title: self.meta.title.clone(),
            description: self.meta.description.clone(),
            mime_type: self.meta.mime_type.clone(),
            required_scopes: self.meta.scopes.clone(),
        }
    }

    /// The variables if `uri` matches this template.
    pub(crate) fn matches(&self, uri: &str) -> Option<UriVars> {
        let mut vars = Vec::new();
        let mut rest = uri;
        let mut template = self.template.as_str();
        while !template.is_empty() {
            match template.find('{') {
                None => {
                    return (rest == template).then(|| UriVars {
                        uri: uri.into(),
                        vars,
                    });
                }
                Some(open) => {
                    let (literal, after) = template.split_at(open);
                    rest = rest.strip_prefix(literal)?;
                    let close = after.find('}')?;
                    let name = &after[1..close];
                    template = &after[close + 1..];
                    // A variable runs to the next literal character (or `/`).
                    let stop = template.chars().next();
                    let end = rest
                        .find(|c| c == '/' || Some(c) == stop)
                        .unwrap_or(rest.len());
                    if end == 0 {
                        return None;
                    }
                    vars.push((name.to_string(), rest[..end].to_string()));
                    rest = &rest[end..];
                }
            }
        }
        rest.is_empty().then(|| UriVars {
            uri: uri.into(),
            vars,
        })
    }
}

pub(crate) fn fixed(uri: &str) -> UriVars {
    UriVars {
        uri: uri.into(),
        vars: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(t: &str) -> ResourceTemplate {
        ResourceTemplate::new(t, "t", |_, _| Ok(Contents::text("")))
    }

    #[test]
    fn templates_match_one_segment_per_variable() {
        let t = template("notes://{owner}/{id}.txt");
        let v = t.matches("notes://ada/42.txt").unwrap();
        assert_eq!((v.get("owner"), v.get("id")), (Some("ada"), Some("42")));
        assert!(t.matches("notes://ada/b/42.txt").is_none());
        assert!(t.matches("notes:///42.txt").is_none());
        assert!(t.matches("other://ada/42.txt").is_none());
        assert!(template("a://{x}").matches("a://x/y").is_none());
    }
}
