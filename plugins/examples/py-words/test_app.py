"""The plugin's own tests, natively (no gateway): ``python test_app.py``."""

import unittest

from portcullis_sdk import DownstreamError, Response, ToolError
from portcullis_sdk.testing import TestHost

import app


class CountTest(unittest.TestCase):
    def test_counts_and_logs(self):
        host = TestHost(subject="ada")
        r = host.call_tool(app.plugin, "pywords.count", {"text": "a bb ccc", "min_length": 2})
        self.assertEqual(r.structured, {"words": 2, "longest": "ccc"})
        self.assertEqual(host.logs, [("info", "py-words", "counted 2 words for ada")])

    def test_the_schema_comes_from_the_signature(self):
        schema = app.plugin.tools["pywords.count"].input_schema
        self.assertEqual(schema["required"], ["text"])
        self.assertEqual(schema["properties"]["text"], {"type": "string", "description": "The text to count"})
        self.assertFalse(schema["additionalProperties"])
        self.assertEqual(app.plugin.tools["pywords.count"].output_schema["required"], ["words", "longest"])

    def test_fetch_uses_the_docs_service_and_reports_failures(self):
        host = TestHost(downstream={"docs": lambda m, p, h, b: Response(200, "one two three")})
        self.assertEqual(host.call_tool(app.plugin, "pywords.fetch", {"path": "/a"}).text, "3 words")
        self.assertEqual(host.requests[0][:3], ("docs", "GET", "/a"))
        down = TestHost(downstream={"docs": lambda *a: (_ for _ in ()).throw(DownstreamError("timeout"))})
        with self.assertRaisesRegex(ToolError, "timeout"):
            down.call_tool(app.plugin, "pywords.fetch", {"path": "/a"})


if __name__ == "__main__":
    unittest.main()
