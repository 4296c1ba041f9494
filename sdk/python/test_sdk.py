"""The Python SDK's own tests, natively: ``python test_sdk.py`` in sdk/python."""

import unittest

from portcullis_sdk import Context, Plugin, ToolError, match_template
from portcullis_sdk.testing import TestHost


def plugin():
    p = Plugin()

    @p.resource_template("notes://{id}", name="note", complete={"id": lambda ctx, prefix: [n for n in ("a1", "a2", "b1") if n.startswith(prefix)]})
    def note(ctx: Context, id):
        return f"note {id} for {ctx.subject}"

    @p.resource("notes://index")
    def index(ctx: Context):
        return "index"

    @p.prompt(name="summarise", complete={"style": lambda ctx, prefix: ["brief", "bullets"]})
    def summarise(ctx: Context, topic: str, style: str = "brief"):
        return f"Summarise {topic} ({style})"

    return p


class TemplatesAndCompletion(unittest.TestCase):
    def test_templates_match_level_one_uris(self):
        self.assertEqual(match_template("a://{x}/{y}", "a://1/b%20c"), {"x": "1", "y": "b c"})
        self.assertIsNone(match_template("a://{x}", "a://1/2"))
        self.assertIsNone(match_template("a.b://{x}", "aXb://1"), "literal parts are literal")

    def test_a_template_serves_its_uris_and_a_fixed_resource_wins(self):
        host = TestHost(subject="ada")
        self.assertEqual(host.read_resource(plugin(), "notes://a1"), ("note a1 for ada", None))
        self.assertEqual(host.read_resource(plugin(), "notes://index")[0], "index")
        with self.assertRaisesRegex(ToolError, "unknown resource"):
            host.read_resource(plugin(), "other://a1")

    def test_completion_for_templates_and_prompts(self):
        p = plugin()
        call = TestHost().call
        self.assertEqual(p.complete(call, ("template", "notes://{id}"), "id", "a"), ["a1", "a2"])
        self.assertEqual(p.complete(call, ("prompt", "summarise"), "style", ""), ["brief", "bullets"])
        self.assertEqual(p.complete(call, ("prompt", "summarise"), "topic", ""), [])
        self.assertEqual(p.complete(call, ("prompt", "nope"), "x", ""), [])


if __name__ == "__main__":
    unittest.main()
