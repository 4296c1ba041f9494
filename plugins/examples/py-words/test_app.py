"""The plugin's own tests, natively (no gateway): ``python test_app.py``."""

import unittest

from portcullis_sdk import DownstreamError, InvalidArguments, NeedInput, Response, ToolError
from portcullis_sdk.testing import McpTestClient, OutputMismatch, TestHost

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


class HarnessTest(unittest.TestCase):
    def test_bounds_are_enforced_before_the_tool_runs(self):
        with self.assertRaisesRegex(InvalidArguments, "at `/min_length`: 0 is less than the minimum of 1"):
            TestHost().call_tool(app.plugin, "pywords.count", {"text": "a", "min_length": 0})

    def test_a_result_breaking_the_output_schema_is_caught(self):
        # What the gateway would refuse: one field more than `Counted` declares.
        original = app.plugin.tools["pywords.count"].function
        app.plugin.tools["pywords.count"].function = lambda ctx, **a: {**original(ctx, **a), "extra": 1}
        try:
            with self.assertRaisesRegex(OutputMismatch, "'extra'"):
                TestHost().call_tool(app.plugin, "pywords.count", {"text": "a"})
        finally:
            app.plugin.tools["pywords.count"].function = original

    def test_the_bug_is_an_error_with_its_message(self):
        with self.assertRaisesRegex(ToolError, "ZeroDivisionError"):
            TestHost().call_tool(app.plugin, "pywords.ratio", {"text": "", "of": "a"})


class HeadlineTest(unittest.TestCase):
    def test_the_model_drafts_then_the_user_approves(self):
        host = TestHost()
        text = {"text": "the gateway checks every call"}
        with self.assertRaises(NeedInput) as first:
            host.call_tool(app.plugin, "pywords.headline", text)
        self.assertEqual((first.exception.key, first.exception.kind), ("draft", "sample"))
        host.answer(first.exception, {"role": "assistant", "model": "m",
                                      "content": {"type": "text", "text": "Every call checked"}})
        with self.assertRaises(NeedInput) as second:
            host.call_tool(app.plugin, "pywords.headline", text)
        self.assertEqual((second.exception.key, second.exception.state), ("approve", "Every call checked"))
        host.answer(second.exception, {"action": "accept", "content": {"headline": "Every call, checked"}})
        self.assertEqual(host.call_tool(app.plugin, "pywords.headline", text).text, "Every call, checked")

    def test_a_client_that_cannot_answer_is_told_so(self):
        r = TestHost(client={"sampling": False}).call_tool(app.plugin, "pywords.headline", {"text": "t"})
        self.assertTrue(r.is_error, r.text)


class PublishTest(unittest.TestCase):
    def test_publishing_changes_the_resource_list_and_embeds_the_document(self):
        host = TestHost(downstream={"docs": {("PUT", "/draft"): lambda *r: Response(201, "")}})
        r = host.call_tool(app.plugin, "pywords.publish", {"name": "draft", "text": "a b"})
        self.assertEqual(r.text, "published words://draft")
        self.assertEqual(r.content[1].uri, "words://draft")
        self.assertEqual(host.notifications, [("lists-changed", ["resources"])])
        with self.assertRaisesRegex(InvalidArguments, "/name"):
            TestHost().call_tool(app.plugin, "pywords.publish", {"name": "../x", "text": "a"})


class ProtocolTest(unittest.TestCase):
    """The plugin over MCP, in-process, as the gateway serves it."""

    def test_tools_resources_prompts_and_completion(self):
        docs = {("GET", "/a"): lambda *r: Response(200, "x yy zzz"),
                ("GET", "/gone"): lambda *r: Response(404, "")}
        host = TestHost(downstream={"docs": docs})
        client = McpTestClient(app.plugin, host)
        tools = {t["name"]: t for t in client.request("tools/list")["result"]["tools"]}
        self.assertEqual(tools["pywords.report"]["_meta"]["io.modelcontextprotocol/tasks"], {"taskSupport": "optional"})
        self.assertEqual(tools["pywords.count"]["inputSchema"]["properties"]["min_length"]["default"], 1)
        top = client.request("tools/call", {"name": "pywords.longest", "arguments": {"text": "a bb ccc", "top": 2}})
        self.assertEqual(top["result"]["structuredContent"], {"result": ["ccc", "bb"]})
        report = client.request("tools/call", {"name": "pywords.report", "arguments": {"path": "/a"}})
        self.assertEqual([c["type"] for c in report["result"]["content"]], ["text", "resource_link"])
        self.assertEqual(host.notifications, [("resource-updated", "words://a")])
        logo = client.request("tools/call", {"name": "pywords.logo", "arguments": {}})["result"]
        self.assertEqual((logo["content"][0]["type"], logo["content"][0]["mimeType"]), ("image", "image/png"))
        listed = client.request("resources/list")["result"]["resources"]
        self.assertEqual([r["uri"] for r in listed], ["logo://pywords"])
        self.assertIn("blob", client.request("resources/read", {"uri": "logo://pywords"})["result"]["contents"][0])
        read = client.request("resources/read", {"uri": "words://a"})["result"]
        self.assertEqual(read["contents"][0]["text"], "x\nyy\nzzz")
        self.assertEqual(client.request("resources/read", {"uri": "words://gone"})["error"]["code"], -32002)
        got = client.request("prompts/get", {"name": "pywords.summarise", "arguments": {"text": "t"}})
        self.assertEqual(got["result"]["messages"][0]["content"]["text"], "Summarise this (brief):\nt")
        done = client.request("completion/complete", {
            "ref": {"type": "ref/prompt", "name": "pywords.summarise"},
            "argument": {"name": "style", "value": "bu"}})
        self.assertEqual(done["result"]["completion"]["values"], ["bullets"])
        # Input over MCP: the roots question comes back as inputRequests; the retry answers it.
        call = {"name": "pywords.roots", "arguments": {}}
        asked = client.request("tools/call", call)["result"]
        self.assertEqual(asked["inputRequests"]["roots"]["method"], "roots/list")
        answered = client.request("tools/call", {**call, "requestState": asked["requestState"],
                                                 "inputResponses": {"roots": {"roots": [{"uri": "file:///w"}]}}})
        self.assertEqual(answered["result"]["content"][0]["text"], "file:///w")


if __name__ == "__main__":
    unittest.main()
