"""The client's roots and the person's yes to an invite, on every protocol version the server
speaks, driven by real clients: the official Python SDK and fastmcp, each in `legacy` mode (an
`initialize` handshake, protocol 2025-11-25) and in `auto` mode (`server/discover`, protocol
2026-07-28, where the server asks by `input_required` results instead of requests of its own).

The server runs without `--root` in a folder holding `outside.txt`, so a server that ignored the
client's roots would fall back to that folder and send the file. Run through tests/python_mcp.rs.
"""

import json
import os
from contextlib import asynccontextmanager
from pathlib import Path

import fastmcp
import pytest
from fastmcp.client.transports import StdioTransport
from mcp import StdioServerParameters, types
from mcp.client import Client

BIN = os.environ["AGENTFERRY_BIN"]
MODERN = "2026-07-28"
CLIENTS = [("sdk", "legacy"), ("sdk", "auto"), ("fastmcp", "legacy"), ("fastmcp", "auto")]


@pytest.fixture
def anyio_backend():
    return "asyncio"


class Person:
    """Answers the server's questions as the test tells it to, and counts them."""

    def __init__(self, roots: list[Path], allow: bool | None):
        self.roots = roots
        self.allow = allow
        self.roots_asked = 0
        self.questions: list[str] = []

    def root_uris(self) -> list[str]:
        self.roots_asked += 1
        return [r.as_uri() for r in self.roots]

    def answer(self, message: str) -> types.ElicitResult:
        self.questions.append(message)
        if self.allow is None:
            return types.ElicitResult(action="decline")
        return types.ElicitResult(action="accept", content={"allow": self.allow})


@asynccontextmanager
async def connect(tmp_path: Path, kind: str, mode: str, person: Person):
    """A client of `kind` in `mode` with a fresh server; yields `call(tool, args) -> (is_error, payload)`."""
    env = dict(os.environ, AGENTFERRY_HOME=str(tmp_path / "home"), AGENTFERRY_BIND="127.0.0.1:0",
               AGENTFERRY_INBOX_BIND="127.0.0.1:0", AGENTFERRY_NAME="modes", AGENTFERRY_LOG="warn")
    args = ["mcp", "--download-dir", str(tmp_path / "downloads")]
    cwd = str(tmp_path / "cwd")

    def payload(result):
        return result.is_error, json.loads(result.content[0].text)

    if kind == "sdk":
        async def roots(_ctx):
            return types.ListRootsResult(roots=[types.Root(uri=u) for u in person.root_uris()])

        async def elicit(_ctx, params):
            return person.answer(params.message)

        params = StdioServerParameters(command=BIN, args=args, env=env, cwd=cwd)
        async with Client(params, mode=mode, list_roots_callback=roots, elicitation_callback=elicit) as client:
            version = client.session.protocol_version
            assert (version == MODERN) == (mode == "auto"), f"{mode} mode negotiated {version}"

            async def call(tool, arguments):
                return payload(await client.call_tool(tool, arguments))

            yield call
    else:
        async def roots(_ctx):
            return person.root_uris()

        async def elicit(message, _type, _params, _ctx):
            return person.answer(message)

        transport = StdioTransport(command=BIN, args=args, env=env, cwd=cwd)
        async with fastmcp.Client(transport, roots=roots, elicitation_handler=elicit, mode=mode) as client:
            version = client.protocol_version
            assert (version == MODERN) == (mode == "auto"), f"{mode} mode negotiated {version}"

            async def call(tool, arguments):
                return payload(await client.call_tool(tool, arguments, raise_on_error=False))

            yield call


def folders(tmp_path: Path) -> tuple[Path, Path]:
    """The server's working folder with `outside.txt`, and the client's root with `inside.txt`."""
    cwd, narrow = tmp_path / "cwd", tmp_path / "narrow"
    for folder, name in [(cwd, "outside.txt"), (narrow, "inside.txt")]:
        folder.mkdir()
        (folder / name).write_text(name)
    return cwd, narrow


@pytest.mark.anyio
@pytest.mark.parametrize("kind,mode", CLIENTS)
async def test_a_narrowed_root_is_obeyed(tmp_path, kind, mode):
    cwd, narrow = folders(tmp_path)
    person = Person([narrow], allow=None)
    async with connect(tmp_path, kind, mode, person) as call:
        is_error, refused = await call("send_file", {"path": str(cwd / "outside.txt")})
        assert is_error and refused["code"] == "path_not_allowed", refused
        is_error, sent = await call("send_file", {"path": str(narrow / "inside.txt")})
        assert not is_error, sent
        assert sent["file_name"] == "inside.txt"
    assert person.roots_asked >= 1


@pytest.mark.anyio
@pytest.mark.parametrize("kind,mode", CLIENTS)
async def test_empty_client_roots_refuse_with_a_hint_naming_root(tmp_path, kind, mode):
    cwd, _ = folders(tmp_path)
    async with connect(tmp_path, kind, mode, Person([], allow=None)) as call:
        is_error, refused = await call("send_file", {"path": str(cwd / "outside.txt")})
        assert is_error and refused["code"] == "no_roots", refused
        assert "--root" in refused["hint"], refused


@pytest.mark.anyio
@pytest.mark.parametrize("kind,mode", CLIENTS)
@pytest.mark.parametrize("answer", [None, False])
async def test_an_invite_is_refused_when_the_person_says_no(tmp_path, kind, mode, answer):
    folders(tmp_path)
    person = Person([tmp_path / "narrow"], allow=answer)
    async with connect(tmp_path, kind, mode, person) as call:
        is_error, refused = await call("create_invite", {"name": "laptop"})
        assert is_error and refused["code"] == "invite_declined", refused
        _, listed = await call("list_invites", {})
        assert listed["invites"] == [], "no invite exists without the person's yes"
    assert len(person.questions) == 1 and "laptop" in person.questions[0], person.questions


@pytest.mark.anyio
@pytest.mark.parametrize("kind,mode", CLIENTS)
async def test_an_invite_waits_for_the_persons_yes(tmp_path, kind, mode):
    folders(tmp_path)
    person = Person([tmp_path / "narrow"], allow=True)
    async with connect(tmp_path, kind, mode, person) as call:
        is_error, created = await call("create_invite", {"name": "laptop"})
        assert not is_error, created
        assert created["uri"].startswith("grant"), created
        _, listed = await call("list_invites", {})
        assert [i["id"] for i in listed["invites"]] == [created["grant_id"]]
        is_error, second = await call("create_invite", {"name": "desk"})
        assert not is_error, second
    assert len(person.questions) == 2, "each invite is asked for once"
