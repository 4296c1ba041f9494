"""`py-words`: a Portcullis plugin in Python, written with `portcullis_sdk`: tools with
constrained arguments and structured results, a task tool with rich content, the client's
roots, a tool asking the client's model and then the user (sampling, then elicitation), a tool
that changes the resource list and embeds what it wrote, an image as a tool result and as a
fixed resource, a resource template and a prompt with completion (the same plugin as
``rs-words`` and ``js-words``).

Build: ``python -m portcullis_sdk build app.py -o py_words.wasm`` (``cargo xtask
build-plugins`` does it, into ``target/plugins/py-words.wasm``). Test: ``python -m pytest``
or ``python test_app.py``.
"""

import base64
from typing import Annotated, TypedDict

from portcullis_sdk import (Context, EmbeddedResource, Field, Image, NotFound, Output, Plugin,
                            ResourceLink, ToolError, fetch, log, notify_lists_changed,
                            notify_resource_updated)

plugin = Plugin()


class Counted(TypedDict):
    words: int
    longest: str


@plugin.tool(name="pywords.count", title="Count words", scopes=["words:read"], read_only=True)
def count(ctx: Context, text: Annotated[str, "The text to count"],
          min_length: Annotated[int, Field(ge=1, le=50, description="Shortest word counted")] = 1,
          ) -> Counted:
    """Count the words in a text (words shorter than min_length are skipped)."""
    words = [w for w in text.split() if len(w) >= min_length]
    log(f"counted {len(words)} words for {ctx.subject}", logger="py-words")
    return {"words": len(words), "longest": max(words, key=len, default="")}


@plugin.tool(name="pywords.fetch", title="Count a document's words", scopes=["words:read"],
             open_world=True)
def fetch_words(ctx: Context, path: Annotated[str, "The document's path on the docs service"]) -> str:
    """Fetch a document from the `docs` service and count its words."""
    response = fetch("docs", path).ok()
    return f"{len(response.text().split())} words"


@plugin.tool(name="pywords.longest", title="The longest words", scopes=["words:read"],
             read_only=True)
def longest(ctx: Context, text: str, top: Annotated[int, Field(ge=1, le=10)] = 3) -> list[str]:
    """The longest words of a text, longest first (structured as {"result": [...]})."""
    return sorted(set(text.split()), key=lambda w: (-len(w), w))[:top]


@plugin.tool(name="pywords.ratio", scopes=["words:read"])
def ratio(ctx: Context, text: str, of: str) -> str:
    """How often one word occurs per word of the text. A bug on purpose: an empty text divides
    by zero, and the client sees the exception's message as an error result."""
    words = text.split()
    return f"{words.count(of) / len(words):.2f}"


@plugin.tool(name="pywords.report", scopes=["words:read"], task="optional")
def report(ctx: Context, path: str) -> Output:
    """Count a document's words slowly (may run as an MCP Task); links the document."""
    text = fetch("docs", path).ok().text()
    ctx.progress(1, 2, "fetched")
    notify_resource_updated(f"words://{path.strip('/')}")
    return Output(f"{len(text.split())} words",
                  content=[ResourceLink(f"words://{path.strip('/')}", path)])


@plugin.tool(name="pywords.roots", title="Where the client works")
def roots(ctx: Context) -> str:
    """The client's roots (the gateway asks the client, then calls again with the answer)."""
    return ", ".join(r["uri"] for r in ctx.roots()) or "no roots"


@plugin.tool(name="pywords.headline", title="Find a headline")
def headline(ctx: Context, text: Annotated[str, "The text to find a headline for"]) -> Output:
    """The client's model drafts a headline for a text; the user approves or edits it."""
    if not (ctx.client["sampling"] and ctx.client["elicitation"]):
        return Output.error("pywords.headline needs a client that can sample and elicit")
    # Two input rounds; each runs the tool again with that round's answers only, so the draft
    # travels in the plugin's state (integrity-protected by the gateway).
    draft = ctx.state
    if draft is None:
        sampled = ctx.sample("draft", {
            "messages": [{"role": "user", "content": {
                "type": "text", "text": f"One headline for this text:\n{text}"}}],
            "maxTokens": 40})
        draft = sampled["content"]["text"]
    ctx.keep_state(draft)
    approved = ctx.elicit("approve", f"Use this headline? {draft}", {"headline": str})
    return Output(approved["headline"] if approved else "no headline (declined)")


@plugin.tool(name="pywords.publish", title="Publish a document", scopes=["words:write"],
             destructive=False, open_world=True)
def publish(ctx: Context,
            name: Annotated[str, Field(pattern="^[a-z0-9-]{1,40}$",
                                       description="The document's name (its resource is words://NAME)")],
            text: Annotated[str, "Its text"]) -> Output:
    """Write a document to the docs service; it is then a `words://` resource."""
    response = fetch("docs", f"/{name}", method="PUT", body=text,
                     headers=[("content-type", "text/plain")])
    if not 200 <= response.status < 300:
        raise ToolError(f"the docs service answered HTTP {response.status}")
    notify_lists_changed(resources=True)
    return Output(f"published words://{name}",
                  content=[EmbeddedResource(f"words://{name}", text=text, mime_type="text/plain")])


# The plugin's logo: a 1x1 PNG.
LOGO = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")


@plugin.tool(name="pywords.logo", title="The logo", read_only=True)
def logo(ctx: Context) -> Output:
    """The plugin's logo, as an image."""
    return Output(content=[Image(LOGO, "image/png")])


@plugin.resource("logo://pywords", name="logo", title="The logo", mime_type="image/png")
def logo_resource(ctx: Context):
    return LOGO


@plugin.resource_template("words://{name}", name="document", title="A document's words",
                          mime_type="text/plain", scopes=["words:read"])
def document(ctx: Context, name):
    """A document of the docs service, one word per line."""
    response = fetch("docs", f"/{name}")
    if response.status == 404:
        raise NotFound()
    return "\n".join(response.ok().text().split())


@plugin.prompt(name="pywords.summarise", title="Summarise a text",
               complete={"style": lambda ctx, prefix: [s for s in ("brief", "bullets")
                                                       if s.startswith(prefix)]})
def summarise(ctx: Context, text: Annotated[str, "The text to summarise"],
              style: Annotated[str, "brief or bullets"] = "brief"):
    """Ask the model for a summary."""
    return f"Summarise this ({style}):\n{text}"


Tools, Resources, Prompts, Completion, Tasks, Approvals = plugin.exports()
