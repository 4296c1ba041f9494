"""The Python SDK's own tests, natively: ``python test_sdk.py`` in sdk/python."""

import dataclasses
import json
import os
import enum
import unittest
from typing import Annotated, Literal, Optional, TypedDict

from portcullis_sdk import (Approval, Context, Field, Image, InvalidArguments, NotFound, Output, Plugin,
                            ResourceLink, ToolError, match_template, notify_resource_updated)
from portcullis_sdk.schema import SchemaError
from portcullis_sdk.testing import McpTestClient, OutputMismatch, TestHost


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


class Issue(TypedDict):
    id: int
    title: str


class Priority(enum.Enum):
    LOW = "low"
    HIGH = "high"


def tracker():
    p = Plugin()

    @p.tool(name="issues.list", title="List issues", read_only=True)
    def list_issues(ctx: Context,
                    limit: Annotated[int, Field(ge=1, le=100, description="How many")] = 20,
                    state: Literal["open", "closed"] = "open",
                    label: Annotated[Optional[str], Field(max_length=20)] = None) -> list[Issue]:
        """List issues."""
        return [{"id": i, "title": f"{state} {i}"} for i in range(limit)]

    @p.tool(name="issues.create", destructive=False)
    def create(ctx: Context, title: Annotated[str, Field(min_length=1, pattern="^[^\n]*$")],
               priority: Priority = Priority.LOW) -> Issue:
        """Create an issue."""
        if title == "crash":
            raise KeyError("no such board")
        if title == "extra":
            return {"id": 1, "title": title, "secret": "x"}
        return {"id": 7, "title": title}

    @p.tool(name="issues.chart")
    def chart(ctx: Context) -> Output:
        """A chart and a link."""
        return Output("a chart", content=[Image(b"\x89PNG", "image/png"),
                                          ResourceLink("issues://7", "issue 7")])

    @p.tool(name="issues.report", task="optional")
    def report(ctx: Context, seconds: int = 1) -> str:
        """A slow report."""
        ctx.progress(1, 1, "done")
        notify_resource_updated("issues://7")
        return "report"

    @p.tool(name="issues.where")
    def where(ctx: Context) -> str:
        """The client's roots."""
        return ", ".join(r["uri"] for r in ctx.roots())

    @p.resource_template("issues://{id}", name="issue", title="An issue")
    def issue(ctx: Context, id):
        if id != "7":
            raise NotFound()
        return "issue 7"

    @p.prompt(name="triage", title="Triage")
    def triage(ctx: Context, issue: Annotated[str, "The issue to triage"]):
        return [("user", f"Triage {issue}"), ("assistant", Image(b"x", "image/png"))]

    return p


class Schemas(unittest.TestCase):
    def test_annotated_constraints_and_defaults_reach_the_schema(self):
        schema = tracker().tools["issues.list"].input_schema["properties"]
        self.assertEqual(schema["limit"], {"type": "integer", "minimum": 1, "maximum": 100,
                                           "description": "How many", "default": 20})
        self.assertEqual(schema["state"], {"enum": ["open", "closed"], "default": "open"})
        self.assertEqual(schema["label"]["anyOf"][0], {"type": "string", "maxLength": 20})
        create = tracker().tools["issues.create"].input_schema["properties"]
        self.assertEqual(create["title"], {"type": "string", "minLength": 1, "pattern": "^[^\n]*$"})
        self.assertEqual(create["priority"], {"enum": ["low", "high"], "default": "low"})

    def test_metadata_the_sdk_does_not_understand_is_refused(self):
        p = Plugin()
        with self.assertRaisesRegex(SchemaError, "not understood"):
            @p.tool()
            def t(ctx: Context, n: Annotated[int, object()]) -> str:
                return ""
        with self.assertRaisesRegex(SchemaError, "bounds numbers"):
            @p.tool()
            def u(ctx: Context, n: Annotated[str, Field(ge=1)]) -> str:
                return ""

    def test_duck_typed_constraints_are_read(self):
        class Ge:  # what annotated_types.Ge looks like
            def __init__(self, ge):
                self.ge = ge
        p = Plugin()

        @p.tool()
        def t(ctx: Context, n: Annotated[int, Ge(3)]) -> str:
            return ""
        self.assertEqual(p.tools["t"].input_schema["properties"]["n"]["minimum"], 3)

    def test_a_list_result_is_structured_under_result(self):
        tool = tracker().tools["issues.list"]
        self.assertEqual(tool.output_schema["required"], ["result"])
        r = TestHost().call_tool(tracker(), "issues.list", {"limit": 2})
        self.assertEqual(r.structured, {"result": [{"id": 0, "title": "open 0"},
                                                   {"id": 1, "title": "open 1"}]})

    def test_async_functions_are_refused_with_the_fix(self):
        p = Plugin()
        with self.assertRaisesRegex(TypeError, "write `def` and drop `await`"):
            @p.tool()
            async def t(ctx: Context) -> str:
                return ""


class Harness(unittest.TestCase):
    def test_arguments_are_checked_as_the_gateway_does(self):
        host = TestHost()
        with self.assertRaisesRegex(InvalidArguments, "at `/limit`: 500 is greater than the maximum of 100"):
            host.call_tool(tracker(), "issues.list", {"limit": 500})
        with self.assertRaisesRegex(InvalidArguments, "must be one of \"low\", \"high\""):
            host.call_tool(tracker(), "issues.create", {"title": "a", "priority": "urgent"})
        with self.assertRaisesRegex(InvalidArguments, "additional properties"):
            host.call_tool(tracker(), "issues.list", {"colour": "red"})

    def test_string_formats_are_checked_as_the_gateway_does(self):
        # The table the gateway's own unit test decides the same way.
        from portcullis_sdk.validate import problems
        with open(os.path.join(os.path.dirname(__file__), "..", "format-cases.json")) as f:
            cases = json.load(f)["cases"]
        for fmt, text, valid in cases:
            found = problems({"type": "string", "format": fmt}, text)
            self.assertEqual(not found, valid, (fmt, text, found))

    def test_an_output_schema_violation_fails_the_test(self):
        with self.assertRaisesRegex(OutputMismatch, "'secret'"):
            TestHost().call_tool(tracker(), "issues.create", {"title": "extra"})

    def test_an_exception_is_an_error_result_with_its_message(self):
        with self.assertRaisesRegex(ToolError, "tool `issues.create` failed: KeyError: 'no such board'"):
            TestHost().call_tool(tracker(), "issues.create", {"title": "crash"})

    def test_rich_content_progress_and_notifications(self):
        host = TestHost()
        r = host.call_tool(tracker(), "issues.chart", {})
        self.assertEqual(r.content[1], Image(b"\x89PNG", "image/png"))
        self.assertEqual(host.call_tool(tracker(), "issues.report", {}).text, "report")
        self.assertEqual(host.progress_reports, [(1, 1, "done")])
        self.assertEqual(host.notifications, [("resource-updated", "issues://7")])
        self.assertEqual(tracker().task_tools(), [("issues.report", "optional", "in-task")])

    def test_roots_are_an_input_round(self):
        from portcullis_sdk import NeedInput
        host = TestHost(client={"roots": True})
        with self.assertRaises(NeedInput) as need:
            host.call_tool(tracker(), "issues.where", {})
        host.answer(need.exception, {"roots": [{"uri": "file:///src"}]})
        self.assertEqual(host.call_tool(tracker(), "issues.where", {}).text, "file:///src")

    def test_prompts_resources_and_completion(self):
        host = TestHost()
        self.assertEqual(host.get_prompt(tracker(), "triage", {"issue": "7"})[0], ("user", "Triage 7"))
        self.assertEqual(host.read_resource(tracker(), "issues://7"), ("issue 7", None))
        with self.assertRaisesRegex(ToolError, "unknown resource"):
            host.read_resource(tracker(), "issues://8")


class Protocol(unittest.TestCase):
    """The plugin spoken to over MCP, in-process, as the gateway serves it."""

    def test_a_plugin_speaks_mcp(self):
        client = McpTestClient(tracker(), TestHost(client={"roots": True}))
        init = client.request("initialize", {"protocolVersion": "2025-11-25"})["result"]
        self.assertIn("resources", init["capabilities"])
        tools = {t["name"]: t for t in client.request("tools/list")["result"]["tools"]}
        self.assertEqual(tools["issues.report"]["_meta"]["io.modelcontextprotocol/tasks"], {"taskSupport": "optional"})
        self.assertEqual(tools["issues.list"]["annotations"], {"readOnlyHint": True})
        listed = client.request("tools/call", {"name": "issues.list", "arguments": {"limit": 1}})
        self.assertEqual(listed["result"]["structuredContent"]["result"][0]["id"], 0)
        bad = client.request("tools/call", {"name": "issues.list", "arguments": {"limit": 0}})
        self.assertTrue(bad["result"]["isError"])
        self.assertIn("Invalid arguments for tool `issues.list`", bad["result"]["content"][0]["text"])
        self.assertEqual(client.request("tools/call", {"name": "nope"})["error"]["code"], -32602)
        chart = client.request("tools/call", {"name": "issues.chart"})["result"]["content"]
        self.assertEqual([c["type"] for c in chart], ["text", "image", "resource_link"])
        self.assertEqual(client.request("resources/read", {"uri": "issues://8"})["error"]["code"], -32002)
        asked = client.request("tools/call", {"name": "issues.where"})["result"]
        self.assertEqual(asked["inputRequests"]["roots"]["method"], "roots/list")
        done = client.request("tools/call", {
            "name": "issues.where", "inputResponses": {"roots": {"roots": [{"uri": "file:///a"}]}},
            "requestState": asked["requestState"]})["result"]
        self.assertEqual(done["content"][0]["text"], "file:///a")
        prompt = client.request("prompts/list")["result"]["prompts"][0]
        self.assertEqual(prompt["arguments"][0]["description"], "The issue to triage")
        self.assertEqual(client.request("method/unknown")["error"]["code"], -32601)

    def test_approvals_are_declared_and_checked_as_the_gateway_checks_them(self):
        p = Plugin()

        @p.tool(name="pay.refund", approval=Approval("payment_refund", bind=("amount", "account")))
        def refund(ctx: Context, amount: str, account: str, memo: str = ""):
            "Refund."
            return f"{amount} {account} {ctx.claim('authorization_details')['type']}"

        @p.tool(name="pay.payout", approval=Approval("payment_initiation", single_use=False, max_age_secs=600))
        def payout(ctx: Context, batch: str):
            "Pay out."
            return batch

        self.assertEqual(p.approval_rules(), [
            ("pay.refund", Approval("payment_refund", ("amount", "account"), True, 300)),
            ("pay.payout", Approval("payment_initiation", (), False, 600)),
        ])
        detail = {"type": "payment_refund", "arguments": {"amount": "1.00", "account": "DE02"}}
        host = TestHost(claims={"authorization_details": detail})
        self.assertEqual(host.call_tool(p, "pay.refund", {"amount": "1.00", "account": "DE02"}).text,
                         "1.00 DE02 payment_refund")
        for approval, problem in [
            (Approval("a b"), "detail_type must match"),
            (Approval("t", bind=("amount", "amount")), "binds `amount` twice"),
            (Approval("t", bind=("iban",)), "binds `iban`, which the tool's parameters do not name"),
            (Approval("t", max_age_secs=0), "max_age_secs must be 1 to 86400"),
            (Approval("t", max_age_secs=86401), "max_age_secs must be 1 to 86400"),
            (Approval("t", bind=tuple(f"a{i}" for i in range(33))), "at most 32"),
        ]:
            with self.assertRaisesRegex(ValueError, problem):
                p.tool(name="pay.bad", approval=approval)(refund)
        with self.assertRaisesRegex(TypeError, "approval must be an Approval"):
            p.tool(name="pay.bad", approval={"type": "t"})


if __name__ == "__main__":
    unittest.main()
