"""agentferry's MCP server driven by the official Python MCP SDK, over stdio, as a host would.

Two server processes with separate node homes move real files over loopback. Run through
`cargo nextest run` (tests/python_mcp.rs sets AGENTFERRY_BIN), or directly:

    AGENTFERRY_BIN=target/debug/agentferry .venv/bin/python -m pytest tests/mcp_e2e -q
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client

BIN = os.environ["AGENTFERRY_BIN"]
TOOLS = {"send_file", "receive_file", "check_session", "add_peer", "list_peers", "resume_transfer",
         "create_invite", "revoke_invite", "list_invites", "receive_messages"}


@pytest.fixture
def anyio_backend():
    return "asyncio"


class Node:
    """One node: a home, a root folder of files to send, a download folder."""

    def __init__(self, base: Path, name: str):
        self.name = name
        self.dir = base / name
        self.home = self.dir / "home"
        self.files = self.dir / "files"
        self.downloads = self.dir / "downloads"
        self.files.mkdir(parents=True)
        self.env = dict(os.environ, AGENTFERRY_HOME=str(self.home), AGENTFERRY_BIND="127.0.0.1:0",
                        AGENTFERRY_INBOX_BIND="127.0.0.1:0", AGENTFERRY_NAME=name, AGENTFERRY_LOG="warn")

    def params(self, *extra, root=True):
        roots = ["--root", str(self.files)] if root else []
        return StdioServerParameters(command=BIN, args=["mcp", *roots, "--download-dir", str(self.downloads), *extra],
                                     env=self.env)

    async def connect(self, stack: AsyncExitStack, *extra, errlog=sys.stderr, root=True, **callbacks) -> ClientSession:
        """A session with this node's server: `extra` server arguments, without `--root` unless
        `root`, and `callbacks` for ClientSession."""
        params = self.params(*extra, root=root)
        read, write = await stack.enter_async_context(stdio_client(params, errlog=errlog))
        session = await stack.enter_async_context(ClientSession(read, write, **callbacks))
        await session.initialize()
        return session

    def cli(self, *args):
        out = subprocess.run([BIN, *args], env=self.env, capture_output=True, text=True, check=True)
        return [json.loads(line) for line in out.stdout.splitlines()]

    def make_file(self, name: str, size: int) -> Path:
        path = self.files / name
        with open(path, "wb") as f:
            block = hashlib.sha256(name.encode()).digest() * 2048  # 64 KiB, varied
            for _ in range(size // len(block)):
                f.write(block)
            f.write(block[: size % len(block)])
        return path

    def server_pids(self):
        """PIDs of this node's MCP server processes (found by their unique home)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"mcp" in cmdline and f"AGENTFERRY_HOME={self.home}".encode() in environ.split(b"\0"):
                pids.append(int(entry.name))
        return pids


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def call(session: ClientSession, tool: str, **args):
    """(is_error, structured content); an error carries {code, message, hint} as JSON text and
    no structured content, so that clients validating against the output schema can read it."""
    result = await session.call_tool(tool, args)
    if not result.is_error:
        return False, result.structured_content
    assert result.structured_content is None, result
    error = json.loads(result.content[0].text)
    assert all(error.get(k) for k in ("code", "message", "hint")), error
    return True, error


async def ok(session: ClientSession, tool: str, **args):
    is_error, content = await call(session, tool, **args)
    assert not is_error, f"{tool} failed: {content}"
    return content


async def wait(session: ClientSession, transfer_id: str, progress=None, timeout=60):
    result = await session.call_tool("check_session", {"transfer_id": transfer_id, "wait": True,
                                                       "timeout_seconds": timeout}, progress_callback=progress)
    assert not result.is_error, result.structured_content
    return result.structured_content


@pytest.mark.anyio
async def test_tools_list_has_every_tool_with_both_schemas(tmp_path):
    a = Node(tmp_path, "alice")
    started = time.monotonic()
    async with AsyncExitStack() as stack:
        session = await a.connect(stack)
        tools = (await session.list_tools()).tools
        elapsed_ms = (time.monotonic() - started) * 1000
        print(f"\nstart-up: process start to tools/list answer in {elapsed_ms:.0f} ms")
    assert {t.name for t in tools} == TOOLS
    for tool in tools:
        assert tool.input_schema["type"] == "object", tool.name
        assert tool.output_schema and tool.output_schema["type"] == "object", tool.name
        assert tool.description and tool.title and tool.annotations, tool.name


@pytest.mark.anyio
async def test_ticket_transfer_with_progress_and_equal_hashes(tmp_path):
    a, b = Node(tmp_path, "alice"), Node(tmp_path, "bob")
    src = a.make_file("data.bin", 20 * 1024 * 1024 + 7)
    async with AsyncExitStack() as stack:
        sa, sb = await a.connect(stack), await b.connect(stack)
        sent = await ok(sa, "send_file", path="data.bin")
        # The CLI on the same home sees what the MCP server runs.
        listed = a.cli("status", sent["transfer_id"], "--json")
        assert listed[0]["event"] == "status" and listed[0]["state"] == "active", listed
        received = await ok(sb, "receive_file", ticket=sent["ticket"])
        assert received["transfer_id"] == sent["transfer_id"]
        seen = []

        async def progress(done, total, message):
            seen.append((done, total))

        report = await wait(sb, sent["transfer_id"], progress)
        done = report["transfers"][0]
        assert done["state"] == "completed", done
        assert seen, "progress notifications arrived"
        assert all(x[0] < y[0] for x, y in zip(seen, seen[1:])), "progress is monotonic"
        assert seen[-1] == (src.stat().st_size, src.stat().st_size)
        assert done["sha256"] == sha256(src) == sha256(Path(done["saved_to"]))
        sender = (await wait(sa, sent["transfer_id"]))["transfers"][0]
        assert sender["state"] == "completed" and sender["sha256"] == done["sha256"]


@pytest.mark.anyio
async def test_push_to_trusted_peer_is_auto_accepted_and_expired_grant_refused(tmp_path):
    a, b = Node(tmp_path, "alice"), Node(tmp_path, "bob")
    exported = b.cli("export", "--json", "--name", "bob", "--ttl", "1h")[0]
    assert exported["event"] == "exported" and exported["uri"].startswith("grant")
    src = a.make_file("push.bin", 3 * 1024 * 1024)
    async with AsyncExitStack() as stack:
        sa, sb = await a.connect(stack), await b.connect(stack)
        peer = await ok(sa, "add_peer", uri=exported["uri"])
        assert peer["name"] == "bob" and not peer["expired"]
        sent = await ok(sa, "send_file", path=str(src), to="bob")
        assert sent["peer_answer"] == "accepted" and "ticket" not in sent
        listed = await ok(sb, "check_session")
        assert any(t["transfer_id"] == sent["transfer_id"] for t in listed["transfers"])
        done = (await wait(sb, sent["transfer_id"]))["transfers"][0]
        assert done["state"] == "completed" and sha256(Path(done["saved_to"])) == sha256(src)
        assert Path(done["saved_to"]).parent == b.downloads.resolve()

        # A grant that expired: alice refuses to use it.
        short = b.cli("export", "--json", "--name", "bob", "--ttl", "1s")[0]
        await ok(sa, "add_peer", uri=short["uri"], name="bob-brief")
        while time.time() <= short["expires_at"]:
            await anyio.sleep(0.05)
        is_error, refused = await call(sa, "send_file", path=str(src), to="bob-brief")
        assert is_error and refused["code"] == "peer_expired", refused


@pytest.mark.anyio
async def test_paths_outside_roots_are_refused(tmp_path):
    a = Node(tmp_path, "alice")
    (tmp_path / "outside.txt").write_text("secret")
    async with AsyncExitStack() as stack:
        sa = await a.connect(stack)
        for path in [str(tmp_path / "outside.txt"), "../../outside.txt", "/etc/passwd"]:
            is_error, refused = await call(sa, "send_file", path=path)
            assert is_error and refused["code"] == "path_not_allowed", (path, refused)
            assert "outside the allowed roots" in refused["message"]
        is_error, unknown = await call(sa, "resume_transfer", transfer_id="0" * 32)
        assert is_error and unknown["code"] == "transfer_not_found"
        assert "check_session" in unknown["hint"]


@pytest.mark.anyio
async def test_cancelled_wait_returns_promptly(tmp_path):
    a = Node(tmp_path, "alice")
    a.make_file("never.bin", 1024)
    async with AsyncExitStack() as stack:
        sa = await a.connect(stack)
        sent = await ok(sa, "send_file", path="never.bin")  # nobody will receive it
        started = time.monotonic()
        with anyio.move_on_after(0.5):
            await wait(sa, sent["transfer_id"], timeout=300)
        assert time.monotonic() - started < 2
        # The session is intact and answers at once.
        answered = time.monotonic()
        report = await ok(sa, "check_session", transfer_id=sent["transfer_id"])
        assert report["transfers"][0]["state"] == "active"
        assert time.monotonic() - answered < 1


@pytest.mark.anyio
async def test_resume_transfer_completes_after_the_receiver_was_killed(tmp_path):
    a, b = Node(tmp_path, "alice"), Node(tmp_path, "bob")
    src = a.make_file("big.bin", 160 * 1024 * 1024)
    async with AsyncExitStack() as stack:
        sa = await a.connect(stack)
        sent = await ok(sa, "send_file", path="big.bin")
        transfer_id = sent["transfer_id"]

        async with AsyncExitStack() as b_stack:
            sb = await b.connect(b_stack)
            await ok(sb, "receive_file", ticket=sent["ticket"])
            killed = anyio.Event()

            async def progress(done, total, message):
                if done >= total // 4 and not killed.is_set():
                    for pid in b.server_pids():
                        os.kill(pid, signal.SIGKILL)
                    killed.set()

            with pytest.raises(BaseException):
                with anyio.fail_after(60):
                    await wait(sb, transfer_id, progress)
            assert killed.is_set(), "bob was killed mid-transfer"

        async with AsyncExitStack() as b_stack:
            sb = await b.connect(b_stack)
            status = (await ok(sb, "check_session", transfer_id=transfer_id))["transfers"][0]
            assert status["state"] == "interrupted", status
            # Usually part of the file; under load the receiver may have written the rest before
            # the kill lands (progress reaches the client late), and resume then only verifies.
            assert 0 < status["bytes_done"] <= src.stat().st_size
            await ok(sb, "resume_transfer", transfer_id=transfer_id)
            done = (await wait(sb, transfer_id))["transfers"][0]
            assert done["state"] == "completed", done
            assert sha256(Path(done["saved_to"])) == sha256(src)


async def pending(session: ClientSession, transfer_id: str):
    status = (await ok(session, "check_session", transfer_id=transfer_id))["transfers"][0]
    assert status["state"] == "pending", status
    return status["held_because"]


@pytest.mark.anyio
async def test_agents_pair_with_an_invite_and_no_cli_call(tmp_path):
    a, b, m = Node(tmp_path, "alice"), Node(tmp_path, "bob"), Node(tmp_path, "mallory")
    src = a.make_file("paired.bin", 2 * 1024 * 1024 + 3)
    b.env["AGENTFERRY_LOG"] = "debug"  # the invite must not reach even a debug log
    log_path = tmp_path / "bob.log"
    async with AsyncExitStack() as stack:
        log = stack.enter_context(open(log_path, "w"))
        sb = await b.connect(stack, errlog=log)
        sa, sm = await a.connect(stack), await m.connect(stack)
        invite = await ok(sb, "create_invite", name="bob")
        assert invite["uri"].startswith("grant") and invite["name"] == "bob"
        assert invite["expires_at"] - time.time() <= 3600 + 5, "a short default life"

        # B hands the URI over (here: the test); A adds it and pushes, with no CLI call anywhere.
        peer = await ok(sa, "add_peer", uri=invite["uri"])
        assert peer["name"] == "bob"
        sent = await ok(sa, "send_file", path="paired.bin", to="bob")
        assert sent["peer_answer"] == "accepted" and "ticket" not in sent, sent
        done = (await wait(sb, sent["transfer_id"]))["transfers"][0]
        assert done["state"] == "completed" and sha256(Path(done["saved_to"])) == sha256(src), done

        # The invite binds the name its first holder used: another node holding the same URI
        # under another name is held, not auto-accepted.
        await ok(sm, "add_peer", uri=invite["uri"])
        m.make_file("other.bin", 1000)
        stolen = await ok(sm, "send_file", path="other.bin", to="bob")
        assert stolen["peer_answer"] == "pending", stolen
        assert await pending(sb, stolen["transfer_id"]) == "grant_holder_mismatch"

        listed = await ok(sb, "list_invites")
        mine = next(i for i in listed["invites"] if i["id"] == invite["grant_id"])
        assert mine["holder"] == "alice" and mine["bytes_accepted"] == src.stat().st_size, mine
        assert invite["uri"] not in json.dumps(listed)

        # Revoked: the next push waits as pending with the reason.
        revoked = await ok(sb, "revoke_invite", grant_id=invite["grant_id"])
        assert revoked["revoked"]
        a.make_file("later.bin", 1000)
        again = await ok(sa, "send_file", path="later.bin", to="bob")
        assert again["peer_answer"] == "pending", again
        assert await pending(sb, again["transfer_id"]) == "grant_revoked"
        is_error, unknown = await call(sb, "revoke_invite", grant_id="00" * 16)
        assert is_error and unknown["code"] == "grant_not_found" and "list_invites" in unknown["hint"]
    assert invite["uri"] not in log_path.read_text(), "the invite appears in no log"
    assert "invite created" in log_path.read_text(), "the log was written at all"


@pytest.mark.anyio
async def test_invites_are_capped_limited_and_confirmed_by_the_person(tmp_path):
    from mcp import types

    a, b = Node(tmp_path, "alice"), Node(tmp_path, "bob")
    answers, asked = [], []

    async def person(context, params):
        asked.append(params.message)
        action = answers.pop(0)
        return types.ElicitResult(action=action, content={"allow": True} if action == "accept" else None)

    src = a.make_file("big.bin", 2 * 1024 * 1024)
    async with AsyncExitStack() as stack:
        sb = await b.connect(stack, "--max-invites", "2", "--invite-quota", "1M", "--invite-max-ttl", "2h",
                             elicitation_callback=person)
        sa = await a.connect(stack)
        answers.append("decline")
        is_error, declined = await call(sb, "create_invite")
        assert is_error and declined["code"] == "invite_declined", declined
        assert "1.0 MiB" in asked[0] and "bob" in asked[0], asked

        is_error, long = await call(sb, "create_invite", ttl_hours=3)
        assert is_error and long["code"] == "invalid_argument" and "at most 2" in long["message"], long

        answers.extend(["accept", "accept"])
        first = await ok(sb, "create_invite", ttl_hours=2)
        await ok(sb, "create_invite")
        is_error, capped = await call(sb, "create_invite")
        assert is_error and capped["code"] == "too_many_invites" and "revoke_invite" in capped["hint"], capped
        assert len(asked) == 3, "no one is asked to confirm an invite that cannot be"

        # Over the quota: held for a person, not fetched.
        await ok(sa, "add_peer", uri=first["uri"])
        sent = await ok(sa, "send_file", path="big.bin", to="bob")
        assert sent["peer_answer"] == "pending", sent
        assert await pending(sb, sent["transfer_id"]) == "grant_quota_exceeded"


@pytest.mark.anyio
async def test_transfers_and_received_files_are_resources(tmp_path):
    import base64

    from mcp.shared.exceptions import MCPError

    a, b = Node(tmp_path, "alice"), Node(tmp_path, "bob")
    big = a.make_file("big.bin", 11 * 1024 * 1024)
    small = a.make_file("notes.txt", 300_000)
    folder = a.files / "album"
    (folder / "sub dir").mkdir(parents=True)
    (folder / "sub dir" / "ünï %.json").write_bytes(b'{"x": 1}')
    updates_in, updates = anyio.create_memory_object_stream(100)

    async def on_message(message):
        if isinstance(message, types.ResourceUpdatedNotification):
            await updates_in.send(message.params.uri)

    async with AsyncExitStack() as stack:
        sa, sb = await a.connect(stack), await b.connect(stack, message_handler=on_message)
        templates = (await sb.list_resource_templates()).resource_templates
        assert {"agentferry://transfers/{transfer_id}", "agentferry://files/{transfer_id}"} <= {
            t.uri_template for t in templates}

        # A subscribed client hears every change through to `completed`: it subscribes before it
        # accepts, so that no change can slip by.
        sent = await ok(sa, "send_file", path="big.bin")
        tid = sent["transfer_id"]
        uri = f"agentferry://transfers/{tid}"
        await sb.subscribe_resource(uri)
        await ok(sb, "receive_file", ticket=sent["ticket"])
        seen = []
        with anyio.fail_after(60):
            async for updated in updates:
                assert updated == uri
                status = json.loads((await sb.read_resource(uri)).contents[0].text)
                seen.append(status["state"])
                if status["state"] == "completed":
                    break
        assert seen[-1] == "completed" and "ticket" not in json.dumps(status), (seen, status)

        # Too large to read as a resource: a clear error pointing at saved_to.
        with pytest.raises(MCPError) as refused:
            await sb.read_resource(f"agentferry://files/{tid}")
        assert refused.value.error.data["code"] == "resource_too_large", refused.value.error
        assert "saved_to" in refused.value.error.data["hint"]

        # A small file reads back as the same bytes, with a MIME type from its name.
        sent = await ok(sa, "send_file", path="notes.txt")
        await ok(sb, "receive_file", ticket=sent["ticket"])
        assert (await wait(sb, sent["transfer_id"]))["transfers"][0]["state"] == "completed"
        content = (await sb.read_resource(f"agentferry://files/{sent['transfer_id']}")).contents[0]
        assert content.mime_type == "text/plain"
        assert base64.b64decode(content.blob) == small.read_bytes()

        # A file inside a received folder, listed and read by its path; nothing outside it.
        sent = await ok(sa, "send_file", path="album")
        await ok(sb, "receive_file", ticket=sent["ticket"])
        assert (await wait(sb, sent["transfer_id"]))["transfers"][0]["state"] == "completed"
        listed = {r.uri: r for r in (await sb.list_resources()).resources}
        inner = next(u for u in listed if u.startswith(f"agentferry://files/{sent['transfer_id']}/"))
        assert " " not in inner and listed[inner].mime_type == "application/json", inner
        content = (await sb.read_resource(inner)).contents[0]
        assert base64.b64decode(content.blob) == b'{"x": 1}'
        assert f"agentferry://transfers/{tid}" in listed
        for escape in ["..%2F..%2Fhome", "../../home", "sub%20dir/../../x"]:
            with pytest.raises(MCPError):
                await sb.read_resource(f"agentferry://files/{sent['transfer_id']}/{escape}")


@pytest.mark.anyio
async def test_the_hosts_roots_apply_when_no_root_flag_is_given(tmp_path):
    a = Node(tmp_path, "alice")
    other = tmp_path / "other root"
    other.mkdir()
    (other / "there.txt").write_text("there")
    a.make_file("here.txt", 100)
    declared = [a.files, other]

    async def host_roots(context):
        return types.ListRootsResult(roots=[types.Root(uri=p.as_uri()) for p in declared])

    async with AsyncExitStack() as stack:
        sa = await a.connect(stack, root=False, list_roots_callback=host_roots)
        await ok(sa, "send_file", path=str(a.files / "here.txt"))
        await ok(sa, "send_file", path=str(other / "there.txt"))
        # The working directory is no root once the host declares its own.
        readme = Path("README.md").resolve()
        is_error, refused = await call(sa, "send_file", path=str(readme))
        assert is_error and refused["code"] == "path_not_allowed", refused

        # The host narrows its roots: the next call sees it.
        declared[:] = [other]
        await sa.send_roots_list_changed()
        is_error, refused = await call(sa, "send_file", path=str(a.files / "here.txt"))
        assert is_error and refused["code"] == "path_not_allowed", refused
        await ok(sa, "send_file", path=str(other / "there.txt"))

    # --root wins over the host's roots.
    declared[:] = [other]
    async with AsyncExitStack() as stack:
        sa = await a.connect(stack, list_roots_callback=host_roots)
        await ok(sa, "send_file", path="here.txt")
        is_error, refused = await call(sa, "send_file", path=str(other / "there.txt"))
        assert is_error and refused["code"] == "path_not_allowed", refused


@pytest.mark.anyio
async def test_a_push_right_after_export_beside_a_running_server_is_taken(tmp_path):
    """B's MCP server runs; `agentferry export` mints a grant beside it; A adds it and pushes at
    once. The server listens within moments of the export, and a push that came sooner waits."""
    a, b = Node(tmp_path, "alice"), Node(tmp_path, "bob")
    src = a.make_file("at-once.bin", 1024 * 1024 + 5)
    async with AsyncExitStack() as stack:
        sb, sa = await b.connect(stack), await a.connect(stack)
        exported = b.cli("export", "--name", "bob", "--json")[0]
        await ok(sa, "add_peer", uri=exported["uri"])
        sent = await ok(sa, "send_file", path="at-once.bin", to="bob")
        assert sent["peer_answer"] in ("accepted", "queued"), sent
        done = (await wait(sa, sent["transfer_id"]))["transfers"][0]
        assert done["state"] == "completed" and done["sha256"] == sha256(src), done
        received = (await wait(sb, sent["transfer_id"]))["transfers"][0]
        assert sha256(Path(received["saved_to"])) == sha256(src), received


@pytest.mark.anyio
async def test_a_push_to_a_peer_that_starts_later_waits_queued_then_arrives(tmp_path):
    a, b = Node(tmp_path, "alice"), Node(tmp_path, "bob")
    src = a.make_file("later.bin", 1024 * 1024 + 7)
    exported = b.cli("export", "--name", "bob", "--json")[0]  # B's server is not running yet
    async with AsyncExitStack() as stack:
        sa = await a.connect(stack)
        await ok(sa, "add_peer", uri=exported["uri"])
        sent = await ok(sa, "send_file", path="later.bin", to="bob")
        assert sent["peer_answer"] == "queued" and "not listening yet" in sent["next"], sent
        status = (await ok(sa, "check_session", transfer_id=sent["transfer_id"]))["transfers"][0]
        assert status["state"] == "active" and "bob is not listening yet" in status["held_because"], status

        await anyio.sleep(5)  # the scenario itself: the peer starts five seconds later
        sb = await b.connect(stack)
        done = (await wait(sa, sent["transfer_id"]))["transfers"][0]
        assert done["state"] == "completed" and "held_because" not in done, done
        received = (await wait(sb, sent["transfer_id"]))["transfers"][0]
        assert sha256(Path(received["saved_to"])) == sha256(src), received

