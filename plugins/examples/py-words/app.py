"""`py-words`: a Portcullis plugin in Python, written with `portcullis_sdk`.

Build: ``python -m portcullis_sdk build app.py -o py_words.wasm`` (``cargo xtask
build-plugins`` does it, into ``target/plugins/py-words.wasm``). Test: ``python -m pytest``
or ``python test_app.py``.
"""

from typing import Annotated, TypedDict

from portcullis_sdk import Context, Plugin, ToolError, fetch, log

plugin = Plugin()


class Counted(TypedDict):
    words: int
    longest: str


@plugin.tool(name="pywords.count", title="Count words", scopes=["words:read"], read_only=True)
def count(ctx: Context, text: Annotated[str, "The text to count"], min_length: int = 1) -> Counted:
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


Tools, Resources, Prompts, Completion = plugin.exports()
