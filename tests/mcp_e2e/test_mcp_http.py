"""agentferry's MCP server over Streamable HTTP (`agentferry mcp --http`), driven by the official
Python MCP SDK's HTTP client with the bearer token, as a web agent would.

Every tool with good and bad arguments, progress, a receive asked as a task, an answer stream
resumed with Last-Event-ID, a transfer with a CLI node, and the refusals only HTTP has (no
token, a wrong one, a hostile Origin). Helpers come from test_mcp.py.
"""

import json
import queue
import re
import secrets
import subprocess
import sys
import threading
import time
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from test_mcp import BIN, TOOLS, Node, call, ok, sha256, wait


@pytest.fixture
def anyio_backend():
    return "asyncio"


class HttpNode(Node):
    """A node whose MCP server listens on HTTP, with its own token."""

    def __init__(self, base: Path, name: str):
        super().__init__(base, name)
        self.token = secrets.token_urlsafe(24)
        self.env["AGENTFERRY_MCP_TOKEN"] = self.token

    def start(self) -> str:
        """Start the server; return its endpoint, read from its stderr (within 20 s)."""
        self.proc = subprocess.Popen(
            [BIN, "mcp", "--http", "127.0.0.1:0", "--root", str(self.files), "--download-dir", str(self.downloads)],
            env=self.env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        lines = queue.Queue()

        def drain():
            for line in self.proc.stderr:
                sys.stderr.write(line)
                lines.put(line)
            lines.put(None)

        threading.Thread(target=drain, daemon=True).start()
        while True:
            line = lines.get(timeout=20)
            assert line is not None, f"agentferry mcp --http exited with {self.proc.wait()}"
            found = re.search(r"MCP over Streamable HTTP at (http://127\.0\.0\.1:\d+/mcp)$", line.strip())
            if found:
                self.url = found.group(1)
                return self.url

    def stop(self):
        self.proc.kill()
        self.proc.wait()

    async def connect(self, stack: AsyncExitStack, **callbacks) -> ClientSession:
        self.start()
        stack.callback(self.stop)
        client = await stack.enter_async_context(
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {self.token}"}, timeout=httpx2.Timeout(30, read=300)))
        read, write = await stack.enter_async_context(streamable_http_client(self.url, http_client=client))
        session = await stack.enter_async_context(ClientSession(read, write, **callbacks))
        await session.initialize()
        return session


async def fails(session: ClientSession, tool: str, code: str, **args):
    is_error, error = await call(session, tool, **args)
    assert is_error and error["code"] == code, (tool, args, error)
    return error


@pytest.mark.anyio
async def test_every_tool_over_http_with_good_and_bad_arguments(tmp_path):
    a, b = HttpNode(tmp_path, "alice"), HttpNode(tmp_path, "bob")
    src = a.make_file("data.bin", 6 * 1024 * 1024 + 5)
    async with AsyncExitStack() as stack:
        sa, sb = await a.connect(stack), await b.connect(stack)
        assert {t.name for t in (await sa.list_tools()).tools} == TOOLS

        # A ticket transfer, followed with progress notifications on the request's SSE stream.
        sent = await ok(sa, "send_file", path="data.bin")
        assert (await ok(sb, "receive_file", ticket=sent["ticket"]))["transfer_id"] == sent["transfer_id"]
        seen = []

        async def progress(done, total, message):
            seen.append(done)

        done = (await wait(sb, sent["transfer_id"], progress))["transfers"][0]
        assert done["state"] == "completed" and done["sha256"] == sha256(src) == sha256(Path(done["saved_to"]))
        assert seen and seen == sorted(seen), seen
        assert any(t["transfer_id"] == sent["transfer_id"] for t in (await ok(sa, "check_session"))["transfers"])

        # Pairing with an invite, a push, and the invite's end.
        invite = await ok(sb, "create_invite", name="bob")
        assert (await ok(sa, "add_peer", uri=invite["uri"]))["name"] == "bob"
        assert [p["name"] for p in (await ok(sa, "list_peers"))["peers"]] == ["bob"]
        a.make_file("push.bin", 200_000)
        pushed = await ok(sa, "send_file", path="push.bin", to="bob")
        assert pushed["peer_answer"] == "accepted", pushed
        assert (await wait(sb, pushed["transfer_id"]))["transfers"][0]["state"] == "completed"
        listed = await ok(sb, "list_invites")
        assert invite["uri"] not in str(listed) and listed["invites"][0]["id"] == invite["grant_id"]
        assert (await ok(sb, "revoke_invite", grant_id=invite["grant_id"]))["revoked"]

        # Errors the engine finds, each with its code.
        await fails(sa, "send_file", "path_not_allowed", path="/etc/passwd")
        await fails(sa, "send_file", "source_unreadable", path="missing.bin")
        await fails(sa, "send_file", "peer_not_found", path="data.bin", to="nobody")
        await fails(sb, "receive_file", "ticket_wrong_kind", ticket="grantabc")
        await fails(sb, "check_session", "transfer_not_found", transfer_id="0" * 32)
        await fails(sb, "resume_transfer", "already_completed", transfer_id=sent["transfer_id"])
        await fails(sa, "add_peer", "peer_uri_invalid", uri="grantnotreally")
        await fails(sb, "revoke_invite", "grant_not_found", grant_id="00" * 16)

        # Arguments that do not fit the schema: invalid_argument naming the tool.
        for tool, args in [("send_file", {}), ("send_file", {"path": 7}), ("receive_file", {}),
                           ("check_session", {"wait": True}), ("add_peer", {}), ("resume_transfer", {}),
                           ("revoke_invite", {}), ("create_invite", {"ttl_hours": "long"})]:
            error = await fails(sa, tool, "invalid_argument", **args)
            assert tool in error["hint"], error


@pytest.mark.anyio
async def test_http_refuses_missing_and_wrong_tokens_and_hostile_origins(tmp_path):
    a = HttpNode(tmp_path, "alice")
    url = a.start()
    try:
        body = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                           "clientInfo": {"name": "raw", "version": "0"}}}
        accept = {"Accept": "application/json, text/event-stream"}
        async with httpx2.AsyncClient() as client:
            for headers, status, code in [
                ({}, 401, "unauthorized"),
                ({"Authorization": f"Bearer {a.token[:-1]}"}, 401, "unauthorized"),
                ({"Authorization": "Bearer " + "x" * 4096}, 401, "unauthorized"),
                ({"Authorization": f"Bearer {a.token}", "Origin": "https://attacker.example"}, 403, "origin_not_allowed"),
                ({"Authorization": f"Bearer {a.token}", "Origin": "null"}, 403, "origin_not_allowed"),
            ]:
                answer = await client.post(url, json=body, headers={**accept, **headers})
                assert answer.status_code == status, (headers.keys(), answer.text)
                assert answer.json()["error"]["code"] == code
                assert a.token not in answer.text
            # DNS rebinding without a browser Origin: a Host that is not this machine.
            rebound = await client.post(url, json=body, headers={**accept, "Authorization": f"Bearer {a.token}",
                                                                 "Host": "attacker.example"})
            assert rebound.status_code == 403, rebound.text
            good = await client.post(url, json=body, headers={**accept, "Authorization": f"Bearer {a.token}"})
            assert good.status_code == 200 and good.headers.get("mcp-session-id")
    finally:
        a.stop()


@pytest.mark.anyio
async def test_http_mcp_node_sends_to_a_cli_node(tmp_path):
    a, b = HttpNode(tmp_path, "alice"), Node(tmp_path, "bob")
    src = a.make_file("to-cli.bin", 3 * 1024 * 1024)
    async with AsyncExitStack() as stack:
        sa = await a.connect(stack)
        sent = await ok(sa, "send_file", path="to-cli.bin")
        out = tmp_path / "bob-got"
        events = b.cli("receive", sent["ticket"], "-o", str(out), "--json")
        assert events[-1]["event"] == "completed" and events[-1]["sha256"] == sha256(src), events
        assert sha256(out / "to-cli.bin") == sha256(src)
        sender = (await wait(sa, sent["transfer_id"]))["transfers"][0]
        assert sender["state"] == "completed" and sender["sha256"] == sha256(src)


class RawSession:
    """A Streamable HTTP session spoken by hand (JSON-RPC over POST, answers as SSE or JSON), for
    what the SDK does not expose: a request that asks for a task, and tasks/get."""

    def __init__(self, client: httpx2.AsyncClient, url: str, token: str):
        self.client, self.url, self.next_id = client, url, 0
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}

    async def post(self, message: dict) -> dict | None:
        answer = await self.client.post(self.url, json=message, headers=self.headers)
        assert answer.status_code in (200, 202), answer.text
        if "mcp-session-id" in answer.headers:
            self.headers["Mcp-Session-Id"] = answer.headers["mcp-session-id"]
            self.headers["MCP-Protocol-Version"] = "2025-11-25"
        if "id" not in message:
            return None
        if answer.headers.get("content-type", "").startswith("application/json"):
            return answer.json()
        for line in answer.text.splitlines():
            if line.startswith("data: ") and line[6:].strip():
                event = json.loads(line[6:])
                if event.get("id") == message["id"]:
                    return event
        raise AssertionError(f"no answer to {message['method']}: {answer.text}")

    async def request(self, method: str, params: dict) -> dict:
        self.next_id += 1
        answer = await self.post({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        assert "result" in answer, answer
        return answer["result"]

    async def open(self):
        await self.request("initialize", {"protocolVersion": "2025-11-25", "clientInfo": {"name": "raw", "version": "0"},
                                          "capabilities": {"extensions": {TASKS: {}}}})
        await self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})


TASKS = "io.modelcontextprotocol/tasks"


@pytest.mark.anyio
async def test_a_receive_asked_as_a_task_over_http_ends_with_the_saved_file(tmp_path):
    a, b = HttpNode(tmp_path, "alice"), HttpNode(tmp_path, "bob")
    src = a.make_file("task.bin", 5 * 1024 * 1024)
    async with AsyncExitStack() as stack:
        sa = await a.connect(stack)
        sent = await ok(sa, "send_file", path="task.bin")
        b.start()
        stack.callback(b.stop)
        client = await stack.enter_async_context(httpx2.AsyncClient(timeout=60))
        raw = RawSession(client, b.url, b.token)
        await raw.open()
        meta = {"io.modelcontextprotocol/clientCapabilities": {"extensions": {TASKS: {}}}}
        created = await raw.request("tools/call", {"name": "receive_file", "arguments": {"ticket": sent["ticket"]},
                                                   "_meta": meta})
        assert created.get("resultType") == "task" and created["status"] == "working", created
        task_id = created["taskId"]
        deadline = time.monotonic() + 60
        while True:
            got = await raw.request("tasks/get", {"taskId": task_id})
            if got.get("status") in ("completed", "failed", "cancelled"):
                break
            assert time.monotonic() < deadline, got
            await anyio.sleep(0.05)
        assert got["status"] == "completed", got
        assert got["statusMessage"].startswith(f"completed: {src.stat().st_size} of"), got
        status = got["result"]["structuredContent"]  # the tool's own final result
        assert status["state"] == "completed" and status["sha256"] == sha256(src), got
        done = (await ok(sa, "check_session", transfer_id=sent["transfer_id"]))["transfers"][0]
        assert done["sha256"] == sha256(src)
        assert sha256(Path(status["saved_to"])) == sha256(src)


@pytest.mark.anyio
async def test_a_dropped_answer_stream_is_resumed_with_last_event_id(tmp_path):
    """A web agent whose connection drops during a long check_session wait gets the answer on
    a GET that names the last event it saw."""
    a = HttpNode(tmp_path, "alice")
    a.make_file("nobody.bin", 1000)
    a.start()
    try:
        async with httpx2.AsyncClient(timeout=30) as client:
            raw = RawSession(client, a.url, a.token)
            await raw.open()
            sent = (await raw.request("tools/call", {"name": "send_file", "arguments": {"path": "nobody.bin"}}))
            transfer_id = sent["structuredContent"]["transfer_id"]
            wait = {"jsonrpc": "2.0", "id": 99, "method": "tools/call",
                    "params": {"name": "check_session",
                               "arguments": {"transfer_id": transfer_id, "wait": True, "timeout_seconds": 2}}}
            last = None
            async with client.stream("POST", a.url, json=wait, headers=raw.headers) as stream:
                assert stream.status_code == 200
                async for line in stream.aiter_lines():
                    if line.startswith("id:"):
                        last = line[3:].strip()
                        break  # the connection drops here, before the answer
            assert last, "the answer stream carries event ids"
            answer = None
            with anyio.fail_after(30):  # keep-alive pings would otherwise hold a broken resume open
                async with client.stream("GET", a.url, headers={**raw.headers, "Last-Event-ID": last}) as stream:
                    assert stream.status_code == 200
                    async for line in stream.aiter_lines():
                        if line.startswith("data: ") and line[6:].strip():
                            event = json.loads(line[6:])
                            if event.get("id") == 99:
                                answer = event
                                break
            assert answer and answer["result"]["structuredContent"]["timed_out"] is True, answer
    finally:
        a.stop()
