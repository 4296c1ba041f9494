//! `rs-words`: the words plugin of `py-words` and `js-words`, in Rust with `portcullis-sdk`,
//! so the three SDKs can be compared item by item (`tests/all/guest_sdks.rs` serves all three
//! to the same SDK client): tools with constrained arguments and structured results, a list
//! result, a task tool with progress, a resource link and a resource-updated notification, the
//! client's roots, a tool that asks the client's model and then the user (sampling, then
//! elicitation, across two input rounds), a tool that changes the resource list (and says so)
//! and embeds what it wrote, an image as a tool result and as a fixed resource, a resource
//! template with a not-found, and a prompt with completion.
//!
//! Build: `cargo xtask build-plugins` (into `target/plugins/rs-words.wasm`). Test: `cargo test`.

use portcullis_sdk::downstream::Request;
use portcullis_sdk::prelude::*;
use portcullis_sdk::resource::UriVars;
use serde_json::json;

/// The service the operator grants this plugin for documents.
const DOCS: &str = "docs";

fn one() -> u32 {
    1
}

fn three() -> u32 {
    3
}

/// The arguments of `rswords.count`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Count {
    /// The text to count
    text: String,
    /// Shortest word counted
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 50))]
    min_length: u32,
}

/// What `rswords.count` answers.
#[derive(Serialize, JsonSchema)]
struct Counted {
    words: usize,
    longest: String,
}

fn words(text: &str, min_length: usize) -> Vec<&str> {
    text.split_whitespace()
        .filter(|w| w.chars().count() >= min_length)
        .collect()
}

fn count(ctx: &Context, args: Count) -> Result<Json<Counted>> {
    let words = words(&args.text, args.min_length as usize);
    portcullis_sdk::log::log(
        portcullis_sdk::log::Level::Info,
        Some("rs-words"),
        &format!(
            "counted {} words for {}",
            words.len(),
            ctx.subject().unwrap_or("nobody")
        ),
    );
    let longest = words
        .iter()
        .copied()
        .fold("", |a, w| if w.len() > a.len() { w } else { a });
    Ok(Json(Counted {
        words: words.len(),
        longest: longest.into(),
    }))
}

/// A document's path on the docs service.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Document {
    /// The document's path on the docs service
    path: String,
}

/// The document's text; a failure becomes an `isError` result the model can act on.
fn fetch(path: &str) -> Result<String> {
    let response = Request::get(path)
        .send(DOCS)
        .map_err(|e| Error::failed(format!("the docs service: {e}")))?;
    if !(200..300).contains(&response.status) {
        return Err(Error::failed(format!(
            "the docs service answered HTTP {} for {path}",
            response.status
        )));
    }
    Ok(response.text())
}

fn fetch_words(_ctx: &Context, args: Document) -> Result<String> {
    Ok(format!(
        "{} words",
        fetch(&args.path)?.split_whitespace().count()
    ))
}

/// The arguments of `rswords.longest`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Longest {
    text: String,
    #[serde(default = "three")]
    #[schemars(range(min = 1, max = 10))]
    top: u32,
}

/// A list result: MCP's structured content is an object, so the list is a field of one.
#[derive(Serialize, JsonSchema)]
struct Words {
    result: Vec<String>,
}

fn longest(_ctx: &Context, args: Longest) -> Result<Json<Words>> {
    let mut words: Vec<&str> = args.text.split_whitespace().collect();
    words.sort_by_key(|w| (std::cmp::Reverse(w.len()), *w));
    words.dedup();
    words.truncate(args.top as usize);
    Ok(Json(Words {
        result: words.into_iter().map(String::from).collect(),
    }))
}

/// The arguments of `rswords.ratio`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RatioOf {
    text: String,
    of: String,
}

/// How often a word occurs per word of a text.
#[derive(Serialize, JsonSchema)]
struct Ratio {
    ratio: f64,
}

/// A bug on purpose, Rust's version of py-words' ZeroDivisionError: an empty text makes the
/// ratio NaN, which JSON writes as `null`; the harness and the gateway refuse that result
/// (it breaks the output schema) rather than pass it on.
fn ratio(_ctx: &Context, args: RatioOf) -> Result<Json<Ratio>> {
    let words: Vec<&str> = args.text.split_whitespace().collect();
    let hits = words.iter().filter(|w| **w == args.of).count();
    Ok(Json(Ratio {
        ratio: hits as f64 / words.len() as f64,
    }))
}

/// The name a document has in `words://{name}`.
fn resource_name(path: &str) -> &str {
    path.trim_matches('/')
}

fn report(ctx: &Context, args: Document) -> Result<Output> {
    let text = fetch(&args.path)?;
    ctx.progress(1.0, Some(2.0), Some("fetched"));
    let uri = format!("words://{}", resource_name(&args.path));
    portcullis_sdk::log::resource_updated(&uri);
    Ok(
        Output::text(format!("{} words", text.split_whitespace().count()))
            .with(Content::link(&uri, &args.path)),
    )
}

fn roots(ctx: &Context, _: NoArgs) -> Result<String> {
    let roots = ctx.roots("roots")?;
    Ok(if roots.is_empty() {
        "no roots".into()
    } else {
        roots.join(", ")
    })
}

/// The arguments of `rswords.headline`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Headline {
    /// The text to find a headline for
    text: String,
}

/// The form the user fills in.
#[derive(Deserialize, JsonSchema)]
struct Approve {
    /// The headline, as the model drafted it or edited
    headline: String,
}

/// Two input rounds: the client's model drafts (sampling), then the user approves or edits
/// (elicitation). Each round the plugin runs again with that round's answers only, so the
/// draft travels in the plugin's state (`keep_state`), which the gateway integrity-protects.
fn headline(ctx: &Context, args: Headline) -> Result<Output> {
    let client = ctx.client();
    if !client.contains(ClientFeatures::SAMPLING | ClientFeatures::ELICITATION) {
        return Ok(Output::error(
            "rswords.headline needs a client that can sample and elicit",
        ));
    }
    let draft = match ctx.state() {
        Some(draft) => draft.to_string(),
        None => {
            let sampled = ctx.sample(
                "draft",
                &json!({
                    "messages": [{"role": "user", "content": {"type": "text",
                        "text": format!("One headline for this text:\n{}", args.text)}}],
                    "maxTokens": 40,
                }),
            )?;
            sampled["content"]["text"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        }
    };
    ctx.keep_state(draft.clone());
    let approved = ctx.elicit::<Approve>("approve", &format!("Use this headline? {draft}"))?;
    Ok(match approved {
        Some(a) => Output::text(a.headline),
        None => Output::text("no headline (declined)"),
    })
}

/// The arguments of `rswords.publish`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Publish {
    /// The document's name (its resource is `words://NAME`)
    #[schemars(regex(pattern = r"^[a-z0-9-]{1,40}$"))]
    name: String,
    /// Its text
    text: String,
}

/// Writes a document: the resource list changed, so clients are told to list again.
fn publish(_ctx: &Context, args: Publish) -> Result<Output> {
    let response = Request::put(&format!("/{}", args.name))
        .body("text/plain", args.text.clone())
        .send(DOCS)
        .map_err(|e| Error::failed(format!("the docs service: {e}")))?;
    if !(200..300).contains(&response.status) {
        return Err(Error::failed(format!(
            "the docs service answered HTTP {}",
            response.status
        )));
    }
    portcullis_sdk::log::lists_changed(false, false, true);
    let uri = format!("words://{}", args.name);
    Ok(
        Output::text(format!("published {uri}")).with(Content::embedded(
            &uri,
            Contents::text(args.text).mime_type("text/plain"),
        )),
    )
}

/// The plugin's logo: a 1×1 PNG.
const LOGO: [u8; 70] = [
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x64, 0x60, 0xf8, 0x5f,
    0x0f, 0x00, 0x02, 0x87, 0x01, 0x80, 0xeb, 0x47, 0xba, 0x92, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

fn logo(_ctx: &Context, _: NoArgs) -> Result<Vec<Content>> {
    Ok(vec![Content::image(LOGO.to_vec(), "image/png")])
}

fn document(_ctx: &Context, vars: &UriVars) -> Result<Contents> {
    let name = vars.get("name").unwrap_or_default();
    let response = Request::get(&format!("/{name}"))
        .send(DOCS)
        .map_err(|e| Error::failed(format!("the docs service: {e}")))?;
    match response.status {
        404 => Err(Error::NotFound),
        200..300 => Ok(Contents::text(
            response
                .text()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join("\n"),
        )
        .mime_type("text/plain")),
        status => Err(Error::failed(format!(
            "the docs service answered HTTP {status}"
        ))),
    }
}

/// The arguments of the `rswords.summarise` prompt.
#[derive(Deserialize, JsonSchema)]
struct Summarise {
    /// The text to summarise
    text: String,
    /// brief or bullets
    style: Option<String>,
}

fn summarise(_ctx: &Context, args: Summarise) -> Result<Vec<Message>> {
    let style = args.style.unwrap_or_else(|| "brief".into());
    Ok(vec![Message::user(format!(
        "Summarise this ({style}):\n{}",
        args.text
    ))])
}

fn styles(_ctx: &Context, prefix: &str) -> Vec<String> {
    ["brief", "bullets"]
        .into_iter()
        .filter(|s| s.starts_with(prefix))
        .map(String::from)
        .collect()
}

fn plugin() -> Plugin {
    Plugin::new()
        .tool(
            Tool::new("rswords.count", count)
                .title("Count words")
                .description("Count the words in a text (words shorter than min_length are skipped).")
                .scopes(["words:read"])
                .read_only(),
        )
        .tool(
            Tool::new("rswords.fetch", fetch_words)
                .title("Count a document's words")
                .description("Fetch a document from the `docs` service and count its words.")
                .scopes(["words:read"])
                .open_world(true),
        )
        .tool(
            Tool::new("rswords.longest", longest)
                .title("The longest words")
                .description("The longest words of a text, longest first.")
                .scopes(["words:read"])
                .read_only(),
        )
        .tool(
            Tool::new("rswords.ratio", ratio)
                .description("How often one word occurs per word of the text.")
                .scopes(["words:read"]),
        )
        .tool(
            Tool::new("rswords.report", report)
                .description("Count a document's words slowly (may run as an MCP Task); links the document.")
                .scopes(["words:read"])
                .task(TaskSupport::Optional, TaskInput::InTask),
        )
        .tool(
            Tool::new("rswords.roots", roots)
                .title("Where the client works")
                .description("The client's roots (the gateway asks the client, then calls again with the answer)."),
        )
        .tool(
            Tool::new("rswords.headline", headline)
                .title("Find a headline")
                .description("The client's model drafts a headline for a text; the user approves or edits it."),
        )
        .tool(
            Tool::new("rswords.publish", publish)
                .title("Publish a document")
                .description("Write a document to the docs service; it is then a `words://` resource.")
                .scopes(["words:write"])
                .additive()
                .open_world(true),
        )
        .tool(
            Tool::new("rswords.logo", logo)
                .title("The logo")
                .description("The plugin's logo, as an image.")
                .read_only(),
        )
        .resource(
            Resource::new("logo://rswords", "logo", |_| {
                Ok(Contents::blob(LOGO.to_vec()).mime_type("image/png"))
            })
            .title("The logo"),
        )
        .template(
            ResourceTemplate::new("words://{name}", "document", document)
                .title("A document's words")
                .mime_type("text/plain")
                .scopes(["words:read"]),
        )
        .prompt(
            Prompt::new("rswords.summarise", summarise)
                .title("Summarise a text")
                .description("Ask the model for a summary.")
                .complete("style", styles),
        )
}

portcullis_sdk::export!(plugin);

#[cfg(test)]
mod tests;
