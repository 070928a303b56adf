#!/usr/bin/env python3
"""Capture real client->server HTTP/1.1 request bytes from the official agent SDKs.

Drives the real SDK clients (python `mcp` 2.x, `a2a-sdk` 1.x, `openai`, optionally the
Node `@modelcontextprotocol/sdk`) against real SDK servers (or, for OpenAI, a small local
stub) through a byte-logging TCP proxy on 127.0.0.1, splits each client->server byte log
into individual HTTP/1.1 requests (bytes exactly as sent, chunked framing included) and
writes them to sidecar/tests/fixtures/sniff/captured/<name>.http plus a cases.toml
manifest holding the intent INTENTS.md says each request should yield.

Run with any python3 >= 3.10: it creates (or reuses) a venv outside the repo, installs the
pinned SDKs into it and re-executes itself there. See README.md next to this file.
"""

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PINS = {
    "mcp": "2.3.0",
    "a2a-sdk[http-server]": "1.3.0",
    "openai": "3.57.0",
    "uvicorn": "0.54.0",
}
NODE_PINS = {"@modelcontextprotocol/sdk": "1.32.2", "zod": "4.6.7"}

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_OUT = REPO / "sidecar" / "tests" / "fixtures" / "sniff" / "captured"
DEFAULT_VENV = Path(os.environ.get("AIMUX_CAPTURE_VENV", "/tmp/aimux-capture-venv"))


# --------------------------------------------------------------------------------------
# bootstrap: venv with pinned SDKs, then re-exec inside it
# --------------------------------------------------------------------------------------

def bootstrap(venv: Path) -> None:
    if Path(sys.prefix).resolve() == venv.resolve():
        return
    py = venv / "bin" / "python"
    if not py.exists():
        print(f"[capture] creating venv {venv}", flush=True)
        subprocess.check_call([sys.executable, "-m", "venv", str(venv)])
    want = [f"{k}=={v}" for k, v in PINS.items()]
    have = subprocess.run([str(py), "-m", "pip", "freeze"], capture_output=True, text=True).stdout.lower()
    missing = [w for w in want if re.sub(r"\[.*\]", "", w).lower() not in have]
    if missing:
        print(f"[capture] installing {' '.join(want)}", flush=True)
        subprocess.check_call(["nice", "-n", "10", str(py), "-m", "pip", "install", "-q", *want])
    os.execv(str(py), [str(py), __file__, *sys.argv[1:]])


# --------------------------------------------------------------------------------------
# background event loop (servers + proxies live here; clients run in the main thread)
# --------------------------------------------------------------------------------------

class Background:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


BG: Background | None = None


class LoggingProxy:
    """Accept on 127.0.0.1:0, connect to the upstream, copy both ways, log client->server bytes."""

    def __init__(self) -> None:
        self.upstream_port: int | None = None
        self.conns: list[dict] = []  # {"id", "t0", "data": bytearray, "marks": [(offset, t)]}
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server:
            self.server.close()

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        conn = {"id": len(self.conns), "data": bytearray(), "marks": []}
        self.conns.append(conn)
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            cw.close()
            return

        async def pump(src, dst, log):
            try:
                while data := await src.read(65536):
                    if log is not None:
                        log["marks"].append((len(log["data"]), time.monotonic()))
                        log["data"] += data
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass

        tasks = [asyncio.ensure_future(pump(cr, uw, conn)), asyncio.ensure_future(pump(ur, cw, None))]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        for w in (uw, cw):
            try:
                w.close()
            except Exception:
                pass


async def _serve_app(app, sock: socket.socket):
    import uvicorn

    config = uvicorn.Config(app, log_level="critical", lifespan="on", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if task.done():
        task.result()
    return server, task


class Capture:
    """Context manager: a proxy in front of an ASGI app (built by app_factory(public_base_url))."""

    def __init__(self, app_factory) -> None:
        self.app_factory = app_factory
        self.proxy = LoggingProxy()

    def __enter__(self) -> "Capture":
        BG.run(self.proxy.start())
        self.base = f"http://127.0.0.1:{self.proxy.port}"
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.proxy.upstream_port = sock.getsockname()[1]
        if self.app_factory is not None:
            app = self.app_factory(self.base)
            self.server, self.task = BG.run(_serve_app(app, sock))
        else:  # upstream started elsewhere (unused)
            sock.close()
        return self

    def __exit__(self, *exc) -> None:
        async def stop():
            await self.proxy.stop()
            if self.app_factory is not None:
                self.server.should_exit = True
                self.server.force_exit = True
                try:
                    await asyncio.wait_for(self.task, 5)
                except Exception:
                    pass

        BG.run(stop())
        time.sleep(0.05)

    def requests(self) -> list[tuple[float, bytes]]:
        out = []
        for conn in self.proxy.conns:
            for off, raw, complete in split_requests(bytes(conn["data"])):
                t = next((tm for o, tm in reversed(conn["marks"]) if o <= off), 0.0)
                if complete:
                    out.append((t, raw))
                else:
                    print(f"[capture] warning: incomplete request dropped: {raw[:80]!r}")
        out.sort(key=lambda x: x[0])
        return out


# --------------------------------------------------------------------------------------
# HTTP/1.1 request splitting
# --------------------------------------------------------------------------------------

def parse_head(head: bytes):
    lines = head.split(b"\r\n")
    method, target, _version = lines[0].decode("latin-1").split(" ", 2)
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        k, _, v = line.decode("latin-1").partition(":")
        headers.append((k.strip(), v.strip()))
    return method, target, headers


def hget(headers, name):
    for k, v in headers:
        if k.lower() == name.lower():
            return v
    return None


def split_requests(buf: bytes):
    """Yield (offset, raw_bytes, complete) for each HTTP/1.1 request in a client->server log."""
    i = 0
    while i < len(buf):
        j = buf.find(b"\r\n\r\n", i)
        if j < 0:
            yield i, buf[i:], False
            return
        method, target, headers = parse_head(buf[i : j + 4])
        pos = j + 4
        te = (hget(headers, "transfer-encoding") or "").lower()
        cl = hget(headers, "content-length")
        if "chunked" in te:
            while True:
                k = buf.find(b"\r\n", pos)
                if k < 0:
                    yield i, buf[i:], False
                    return
                size = int(buf[pos:k].split(b";")[0].strip(), 16)
                pos = k + 2
                if size == 0:
                    # trailers, then an empty line
                    while True:
                        k = buf.find(b"\r\n", pos)
                        if k < 0:
                            yield i, buf[i:], False
                            return
                        line = buf[pos:k]
                        pos = k + 2
                        if not line:
                            break
                    break
                pos += size + 2
                if pos > len(buf):
                    yield i, buf[i:], False
                    return
        elif cl is not None:
            pos += int(cl)
            if pos > len(buf):
                yield i, buf[i:], False
                return
        yield i, buf[i:pos], True
        i = pos


def decode_body(raw: bytes):
    head, _, rest = raw.partition(b"\r\n\r\n")
    method, target, headers = parse_head(head + b"\r\n\r\n")
    if "chunked" in (hget(headers, "transfer-encoding") or "").lower():
        body, pos = bytearray(), 0
        while True:
            k = rest.find(b"\r\n", pos)
            size = int(rest[pos:k].split(b";")[0].strip(), 16)
            pos = k + 2
            if size == 0:
                break
            body += rest[pos : pos + size]
            pos += size + 2
        rest = bytes(body)
    return method, target, headers, rest


# --------------------------------------------------------------------------------------
# expected intents (INTENTS.md)
# --------------------------------------------------------------------------------------

A2A_V1 = {
    "SendMessage", "SendStreamingMessage", "GetTask", "ListTasks", "CancelTask", "SubscribeToTask",
    "CreateTaskPushNotificationConfig", "GetTaskPushNotificationConfig",
    # a2a-sdk 1.3.0 (and the 1.0 proto, lf.a2a.v1.A2AService) spell the list call in the plural;
    # INTENTS.md writes `ListTaskPushNotificationConfig`.
    "ListTaskPushNotificationConfigs", "DeleteTaskPushNotificationConfig", "GetExtendedAgentCard",
}
A2A_V03 = {
    "message/send": "SendMessage", "message/stream": "SendStreamingMessage", "tasks/get": "GetTask",
    "tasks/cancel": "CancelTask", "tasks/resubscribe": "SubscribeToTask",
    "tasks/pushNotificationConfig/set": "CreateTaskPushNotificationConfig",
    "tasks/pushNotificationConfig/get": "GetTaskPushNotificationConfig",
    "tasks/pushNotificationConfig/list": "ListTaskPushNotificationConfigs",
    "tasks/pushNotificationConfig/delete": "DeleteTaskPushNotificationConfig",
    "agent/getAuthenticatedExtendedCard": "GetExtendedAgentCard",
}
A2A_STREAMING = {"SendStreamingMessage", "SubscribeToTask"}
OPENAI_PATHS = {
    "/v1/chat/completions": "chat", "/v1/responses": "responses",
    "/v1/embeddings": "embeddings", "/v1/completions": "completions",
}


def a2a_rest_op(method: str, path: str):
    p = re.sub(r"^/[^/]+(?=/(message:|tasks|extendedAgentCard))", "", path)  # strip /{tenant}
    p = re.sub(r"^/v1(?=/)", "", p)  # a2a 0.3 REST paths carry /v1
    table = [
        ("POST", r"/message:send", "SendMessage"),
        ("POST", r"/message:stream", "SendStreamingMessage"),
        ("GET", r"/tasks", "ListTasks"),
        ("GET", r"/tasks/[^/:]+", "GetTask"),
        ("POST", r"/tasks/[^/:]+:cancel", "CancelTask"),
        ("GET", r"/tasks/[^/:]+:subscribe", "SubscribeToTask"),
        ("POST", r"/tasks/[^/:]+:subscribe", "SubscribeToTask"),
        ("POST", r"/tasks/[^/:]+/pushNotificationConfigs", "CreateTaskPushNotificationConfig"),
        ("GET", r"/tasks/[^/:]+/pushNotificationConfigs", "ListTaskPushNotificationConfigs"),
        ("GET", r"/tasks/[^/:]+/pushNotificationConfigs/[^/]+", "GetTaskPushNotificationConfig"),
        ("DELETE", r"/tasks/[^/:]+/pushNotificationConfigs/[^/]+", "DeleteTaskPushNotificationConfig"),
        ("GET", r"/extendedAgentCard", "GetExtendedAgentCard"),
        ("GET", r"/card", "GetExtendedAgentCard"),  # a2a 0.3 REST: GET /v1/card
    ]
    for m, rx, op in table:
        if m == method and re.fullmatch(rx, p):
            return op
    return None


def a2a_skill(obj) -> str:
    if not isinstance(obj, dict):
        return ""
    # a2a-sdk's 0.3 REST transport names the message `request` (proto field name) instead of `message`
    msg = obj.get("message") if isinstance(obj.get("message"), dict) else obj.get("request")
    for md in ((msg if isinstance(msg, dict) else {}).get("metadata"), obj.get("metadata")):
        if isinstance(md, dict) and isinstance(md.get("aimux.skill"), str):
            return md["aimux.skill"]
    return ""


def mcp_target(method: str, params) -> str:
    if not isinstance(params, dict):
        return ""
    if method in ("tools/call", "prompts/get"):
        return params.get("name") or ""
    if method in ("resources/read", "resources/subscribe", "resources/unsubscribe"):
        return params.get("uri") or ""
    if method == "completion/complete":
        ref = params.get("ref") or {}
        return ref.get("name") or ref.get("uri") or ""
    return ""


def decode_header_value(v: str) -> str:
    import base64

    m = re.fullmatch(r"=\?base64\?(.*)\?=", v)
    return base64.b64decode(m.group(1)).decode() if m else v


def expect(raw: bytes):
    """(protocol, operation, target, flags) per INTENTS.md for one captured request."""
    method, target, headers, body = decode_body(raw)
    path = target.split("?", 1)[0]
    accept = (hget(headers, "accept") or "").lower()
    mcp_hdr = any(hget(headers, h) for h in ("mcp-session-id", "mcp-protocol-version", "mcp-method"))
    flags: list[str] = []
    obj = None
    if body:
        try:
            obj = json.loads(body)
        except ValueError:
            obj = None
    # OpenAI
    for suffix, op in OPENAI_PATHS.items():
        if method == "POST" and path.endswith(suffix) and isinstance(obj, dict):
            if obj.get("stream") is True:
                flags.append("streaming")
            return "openai", op, obj.get("model") or "", flags
    # A2A well-known card
    if method == "GET" and path.endswith(("/.well-known/agent-card.json", "/.well-known/agent.json")):
        return "a2a", "GetAgentCard", "", flags
    # MCP streams / session end
    if method == "GET" and "text/event-stream" in accept and (
        path.endswith("/sse") or hget(headers, "mcp-session-id") or hget(headers, "last-event-id")
    ):
        return "mcp", "stream/open", "", ["streaming"]
    if method == "DELETE" and hget(headers, "mcp-session-id"):
        return "mcp", "session/delete", "", flags
    # JSON-RPC bodies
    first = obj
    if isinstance(obj, list) and obj:
        flags.append("batch")
        first = obj[0]
    if isinstance(first, dict) and isinstance(first.get("method"), str):
        m = first["method"]
        params = first.get("params")
        if m in A2A_V1 or m in A2A_V03:
            op = A2A_V03.get(m, m)
            if op in A2A_STREAMING:
                flags.append("streaming")
            return "a2a", op, a2a_skill(params), flags
        is_mcp = (
            m in ("initialize", "ping", "server/discover", "subscriptions/listen")
            or m.split("/")[0] in ("tools", "resources", "prompts", "completion", "sampling",
                                   "elicitation", "roots", "tasks", "notifications", "logging")
        )
        if is_mcp or mcp_hdr:
            tgt = mcp_target(m, params)
            hm = hget(headers, "mcp-method")
            hn = hget(headers, "mcp-name")
            if (hm is not None and hm != m) or (hn is not None and decode_header_value(hn) != tgt):
                flags.insert(0, "mismatch")
            if m == "subscriptions/listen":
                flags.append("streaming")
            return "mcp", m, tgt, flags
    # A2A REST binding
    op = a2a_rest_op(method, path)
    if op:
        if op in A2A_STREAMING:
            flags.append("streaming")
        return "a2a", op, a2a_skill(obj), flags
    return "http", method, path, flags


def slug(raw: bytes) -> str:
    proto, op, target, flags = expect(raw)
    method, tgt, headers, _ = decode_body(raw)
    if proto == "mcp" and op == "stream/open":
        return "sse-stream" if tgt.split("?")[0].endswith("/sse") else "get-stream"
    if proto == "mcp" and op == "session/delete":
        return "delete"
    if proto == "a2a":
        return re.sub(r"(?<!^)(?=[A-Z])", "-", op).lower()
    if proto == "openai":
        return op + ("-stream" if "streaming" in flags else "")
    if proto == "mcp":
        return op.replace("/", "-").lower()
    return f"{method.lower()}-{re.sub(r'[^a-z0-9]+', '-', tgt.lower()).strip('-')}"


# --------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------

@dataclass
class Fixture:
    file: str
    raw: bytes
    source: str
    note: str = ""


FIXTURES: list[Fixture] = []
REPORT: list[str] = []


def collect(cap: Capture, prefix: str, source: str, *, rename=None, dedup=("get-stream", "sse-stream"),
            require=(), sources=None):
    """Turn a capture into fixtures named <prefix>-<slug>.http (sources: per-slug source overrides)."""
    rename = rename or {}
    sources = sources or {}
    seen: dict[str, int] = {}
    names = []
    for _t, raw in cap.requests():
        s = slug(raw)
        seen[s] = seen.get(s, 0) + 1
        if seen[s] > 1:
            if s in dedup:
                continue
            s = f"{s}-{seen[s]}"
        s = rename.get(s, s)
        names.append(s)
        FIXTURES.append(Fixture(f"{prefix}-{s}.http", raw, sources.get(s, source)))
    missing = [r for r in require if r not in names]
    line = f"{prefix}: {', '.join(names)}"
    if missing:
        line += f"   MISSING: {missing}"
    print(f"[capture] {line}", flush=True)
    REPORT.append(line)
    return names


def version(dist: str) -> str:
    from importlib.metadata import version as v

    return v(dist)


# --------------------------------------------------------------------------------------
# MCP (python SDK)
# --------------------------------------------------------------------------------------

def make_mcp_server():
    from typing import Annotated

    from mcp.server.mcpserver import MCPServer
    from mcp_types import Completion, PromptReference
    from pydantic import Field

    srv = MCPServer("aimux-capture", log_level="ERROR")

    @srv.tool()
    def get_weather(
        location: Annotated[str, Field(description="City name", json_schema_extra={"x-mcp-header": "Location"})],
    ) -> str:
        """Current weather for a city."""
        return f"Sunny in {location}"

    @srv.resource("file:///notes/readme.txt")
    def readme() -> str:
        """A note."""
        return "hello from the readme"

    @srv.resource("weather://{city}/current")
    def current(city: str) -> str:
        """Current conditions."""
        return f"{city}: 21C"

    @srv.prompt()
    def summarize(text: str) -> str:
        """Summarize a text."""
        return f"Summarize: {text}"

    @srv.completion()
    async def complete(ref, argument, context):
        if isinstance(ref, PromptReference):
            return Completion(values=["short", "long"])
        return Completion(values=["Seattle"])

    return srv


def mcp_streamable_app(_base):
    return make_mcp_server().streamable_http_app()


def mcp_sse_app(_base):
    return make_mcp_server().sse_app()


async def mcp_handshake_session(client):
    from mcp_types import PromptReference

    await client.list_tools()
    await client.call_tool("get_weather", {"location": "Seattle"})
    await client.list_resources()
    await client.list_resource_templates()
    await client.read_resource("file:///notes/readme.txt")
    await client.list_prompts()
    await client.get_prompt("summarize", {"text": "a long story"})
    await client.complete(PromptReference(type="ref/prompt", name="summarize"), {"name": "text", "value": "sh"})
    await client.send_ping()
    await asyncio.sleep(0.3)  # let the standalone GET stream open


def run_mcp_handshake(rev: str | None, *, transport: str = "streamable-http"):
    import mcp.client.session as mcp_session
    from mcp.client import Client
    from mcp.client.sse import sse_client

    saved = mcp_session.LATEST_HANDSHAKE_VERSION
    offered = rev or saved
    mcp_session.LATEST_HANDSHAKE_VERSION = offered  # the SDK's only knob for the offered revision
    try:
        app = mcp_streamable_app if transport == "streamable-http" else mcp_sse_app
        with Capture(app) as cap:
            async def main():
                if transport == "streamable-http":
                    server = f"{cap.base}/mcp"
                else:
                    server = sse_client(f"{cap.base}/sse")
                async with Client(server, mode="legacy") as client:
                    assert client.protocol_version == offered, client.protocol_version
                    await mcp_handshake_session(client)

            asyncio.run(main())
    finally:
        mcp_session.LATEST_HANDSHAKE_VERSION = saved
    how = "" if rev is None else f", offered revision pinned via mcp.client.session.LATEST_HANDSHAKE_VERSION"
    if transport == "streamable-http":
        prefix = f"mcp-{offered}"
        src = f"python mcp {version('mcp')}, streamable-http client, Client(mode='legacy'){how}"
        req = ["initialize", "notifications-initialized", "tools-call", "resources-read", "prompts-get",
               "ping", "get-stream", "delete"]
    else:
        prefix = f"mcp-{offered}-sse"
        src = f"python mcp {version('mcp')}, legacy HTTP+SSE client (mcp.client.sse.sse_client), Client(mode='legacy'){how}"
        req = ["sse-stream", "initialize", "notifications-initialized", "tools-call"]
    collect(cap, prefix, src, require=req)


def run_mcp_modern():
    from mcp.client import Client

    with Capture(mcp_streamable_app) as cap:
        async def main():
            async with Client(f"{cap.base}/mcp", mode="auto") as client:
                assert client.protocol_version == "2026-07-28", client.protocol_version
                await client.list_tools()
                await client.call_tool("get_weather", {"location": "Seattle"})
                await client.call_tool("get_weather", {"location": "Zürich"})
                await client.list_resources()
                await client.list_resource_templates()
                await client.read_resource("file:///notes/readme.txt")
                await client.list_prompts()
                await client.get_prompt("summarize", {"text": "a long story"})
                from mcp_types import PromptReference

                await client.complete(PromptReference(type="ref/prompt", name="summarize"),
                                      {"name": "text", "value": "sh"})
                async with client.listen(tools_list_changed=True):
                    pass

        asyncio.run(main())
    src = f"python mcp {version('mcp')}, streamable-http client, Client(mode='auto') -> 2026-07-28"
    collect(cap, "mcp-2026-07-28", src, rename={"tools-call-2": "tools-call-non-ascii"},
            require=["server-discover", "tools-call", "tools-call-non-ascii", "resources-read", "prompts-get",
                     "subscriptions-listen"])


# --------------------------------------------------------------------------------------
# A2A
# --------------------------------------------------------------------------------------

def make_a2a_card(base: str):
    from a2a.types.a2a_pb2 import AgentCapabilities, AgentCard, AgentInterface, AgentSkill

    return AgentCard(
        name="Capture Agent",
        description="Summarizes text (AIMux fixture capture).",
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(url=f"{base}/", protocol_binding="JSONRPC", protocol_version="1.0"),
            AgentInterface(url=f"{base}", protocol_binding="HTTP+JSON", protocol_version="1.0"),
        ],
        capabilities=AgentCapabilities(streaming=True, push_notifications=True, extended_agent_card=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="summarize", name="Summarize", description="Summarize a text",
                           tags=["text"], examples=["summarize this"])],
    )


def a2a_app(base: str):
    from a2a.helpers.proto_helpers import new_task_from_user_message
    from a2a.server.agent_execution import AgentExecutor
    from a2a.server.request_handlers import DefaultRequestHandler
    from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes, create_rest_routes
    from a2a.server.tasks import InMemoryPushNotificationConfigStore, InMemoryTaskStore, TaskUpdater
    from a2a.types.a2a_pb2 import Part
    from starlette.applications import Starlette

    class Executor(AgentExecutor):
        async def execute(self, context, event_queue):
            task = context.current_task
            if task is None:
                task = new_task_from_user_message(context.message)
                await event_queue.enqueue_event(task)
            updater = TaskUpdater(event_queue, task.id, task.context_id)
            await updater.start_work()
            if "slow" in context.get_user_input():
                await asyncio.sleep(60)  # stays WORKING until cancelled
                return
            await updater.add_artifact([Part(text="summary: it is short")], name="summary")
            await updater.complete()

        async def cancel(self, context, event_queue):
            updater = TaskUpdater(event_queue, context.task_id, context.context_id)
            await updater.cancel()

    card = make_a2a_card(base)
    handler = DefaultRequestHandler(
        agent_executor=Executor(),
        task_store=InMemoryTaskStore(),
        agent_card=card,
        push_config_store=InMemoryPushNotificationConfigStore(),
        extended_agent_card=card,
    )
    routes = []
    routes += create_agent_card_routes(card)
    routes += create_agent_card_routes(card, card_url="/.well-known/agent.json")
    routes += create_jsonrpc_routes(handler, "/", enable_v0_3_compat=True)
    routes += create_rest_routes(handler, enable_v0_3_compat=True)
    return Starlette(routes=routes)


async def optional(label, what, coro):
    """Run an SDK call whose absence is tolerated (not every binding/version has it); note failures."""
    try:
        return await coro
    except Exception as e:  # noqa: BLE001
        msg = f"{label}: {what} raised {type(e).__name__}: {str(e).splitlines()[0][:110]}"
        print(f"[capture] {msg}")
        REPORT.append(msg)


async def a2a_session(client, *, streaming_client, label):
    """One full tour; `client` is non-streaming, `streaming_client` streams."""
    from a2a.types.a2a_pb2 import (
        CancelTaskRequest,
        DeleteTaskPushNotificationConfigRequest,
        GetExtendedAgentCardRequest,
        GetTaskPushNotificationConfigRequest,
        GetTaskRequest,
        ListTaskPushNotificationConfigsRequest,
        ListTasksRequest,
        Message,
        Part,
        Role,
        SendMessageConfiguration,
        SendMessageRequest,
        SubscribeToTaskRequest,
        TaskPushNotificationConfig,
    )

    def msg(text, mid):
        m = Message(message_id=mid, role=Role.ROLE_USER, parts=[Part(text=text)])
        m.metadata.update({"aimux.skill": "summarize"})
        return m

    # SendMessage (completes)
    task_id = None
    async for ev in client.send_message(SendMessageRequest(message=msg("summarize: the quick brown fox", f"{label}-m1"))):
        if ev.HasField("task"):
            task_id = ev.task.id
    assert task_id
    await client.get_task(GetTaskRequest(id=task_id, history_length=1))
    await optional(label, "ListTasks", client.list_tasks(ListTasksRequest(page_size=10)))
    # a task that stays WORKING: subscribe, push configs, cancel
    slow_id = None
    req = SendMessageRequest(message=msg("slow: a long report", f"{label}-m2"),
                             configuration=SendMessageConfiguration(return_immediately=True))
    async for ev in client.send_message(req):
        if ev.HasField("task"):
            slow_id = ev.task.id
    assert slow_id
    await optional(label, "CreateTaskPushNotificationConfig", client.create_task_push_notification_config(
        TaskPushNotificationConfig(task_id=slow_id, id="cfg-1", url="https://hooks.example.com/a2a", token="t0k")))
    await optional(label, "GetTaskPushNotificationConfig", client.get_task_push_notification_config(
        GetTaskPushNotificationConfigRequest(task_id=slow_id, id="cfg-1")))
    await optional(label, "ListTaskPushNotificationConfigs", client.list_task_push_notification_configs(
        ListTaskPushNotificationConfigsRequest(task_id=slow_id)))
    await optional(label, "DeleteTaskPushNotificationConfig", client.delete_task_push_notification_config(
        DeleteTaskPushNotificationConfigRequest(task_id=slow_id, id="cfg-1")))

    async def sub():
        async for _ev in streaming_client.subscribe(SubscribeToTaskRequest(id=slow_id)):
            break

    await optional(label, "SubscribeToTask", asyncio.wait_for(sub(), 5))
    await client.cancel_task(CancelTaskRequest(id=slow_id))
    await optional(label, "GetExtendedAgentCard", client.get_extended_agent_card(GetExtendedAgentCardRequest()))
    # SendStreamingMessage
    async for _ev in streaming_client.send_message(
            SendMessageRequest(message=msg("summarize: streamed please", f"{label}-m3"))):
        pass


async def a2a_short_tour(client, *, streaming_client, label):
    from a2a.types.a2a_pb2 import GetTaskRequest, Message, Part, Role, SendMessageRequest

    m = Message(message_id=f"{label}-m1", role=Role.ROLE_USER, parts=[Part(text="summarize: tenant scoped")])
    m.metadata.update({"aimux.skill": "summarize"})
    task_id = None
    async for ev in client.send_message(SendMessageRequest(message=m)):
        if ev.HasField("task"):
            task_id = ev.task.id
    await client.get_task(GetTaskRequest(id=task_id))
    m2 = Message(message_id=f"{label}-m2", role=Role.ROLE_USER, parts=[Part(text="summarize: streamed")])
    m2.metadata.update({"aimux.skill": "summarize"})
    async for _ev in streaming_client.send_message(SendMessageRequest(message=m2)):
        pass


def run_a2a(binding: str, proto_version: str, tenant: str = ""):
    import httpx
    from a2a.client import A2ACardResolver, ClientConfig, ClientFactory

    with Capture(a2a_app) as cap:
        async def main():
            async with httpx.AsyncClient(timeout=10) as hc:
                resolver = A2ACardResolver(hc, cap.base)
                card = await resolver.get_agent_card()
                if proto_version == "0.3":
                    await resolver.get_agent_card(relative_card_path="/.well-known/agent.json")
                    for iface in card.supported_interfaces:
                        iface.protocol_version = "0.3"
                for iface in card.supported_interfaces:
                    iface.tenant = tenant
                clients = []
                for streaming in (False, True):
                    factory = ClientFactory(ClientConfig(streaming=streaming, supported_protocol_bindings=[binding]))
                    clients.append(factory.create(card))
                try:
                    if tenant:
                        await a2a_short_tour(clients[0], streaming_client=clients[1], label=f"{binding}-{tenant}")
                    else:
                        await a2a_session(clients[0], streaming_client=clients[1], label=f"{binding}-{proto_version}")
                finally:
                    for c in clients:
                        await c.close()

        asyncio.run(main())
    b = "jsonrpc" if binding == "JSONRPC" else "rest"
    prefix = f"a2a-{b}" if proto_version == "1.0" else f"a2a-v0.3-{b}"
    how = "" if proto_version == "1.0" else " (card's interfaces relabelled protocol_version=0.3 -> Compat transport)"
    if tenant:
        prefix += "-tenant"
        how = f" (card interface tenant={tenant!r} -> TenantTransportDecorator)"
    src = f"python a2a-sdk {version('a2a-sdk')}, ClientFactory {binding} client{how}"
    card_src = f"python a2a-sdk {version('a2a-sdk')}, A2ACardResolver.get_agent_card() with a plain httpx.AsyncClient"
    sources = {"get-agent-card": card_src,
               "get-agent-card-2": card_src + ", relative_card_path='/.well-known/agent.json' (pre-0.3 path)"}
    req = ["get-agent-card", "send-message", "send-streaming-message", "get-task"] + ([] if tenant else ["cancel-task"])
    collect(cap, prefix, src, rename={"send-message-2": "send-message-return-immediately",
                                      "get-agent-card-2": "get-agent-card-legacy-path"},
            sources=sources, require=req)


# --------------------------------------------------------------------------------------
# OpenAI (real client, stub server)
# --------------------------------------------------------------------------------------

def openai_stub_app(_base):
    import base64
    import struct

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    now = int(time.time())

    def sse(events):
        async def gen():
            for ev in events:
                yield ev

        return StreamingResponse(gen(), media_type="text/event-stream")

    async def chat(req: Request):
        b = await req.json()
        model = b["model"]
        if b.get("stream"):
            chunks = []
            for i, delta in enumerate([{"role": "assistant", "content": ""}, {"content": "Hello"}, {"content": "!"}]):
                chunks.append({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": now, "model": model,
                               "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
            chunks.append({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": now, "model": model,
                           "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            return sse([f"data: {json.dumps(c)}\n\n" for c in chunks] + ["data: [DONE]\n\n"])
        return JSONResponse({
            "id": "chatcmpl-1", "object": "chat.completion", "created": now, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
        })

    def response_obj(model, status="completed", text="Hello!"):
        out = [] if status != "completed" else [{
            "type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}]
        return {"id": "resp_1", "object": "response", "created_at": now, "status": status, "model": model,
                "output": out, "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
                "usage": {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7,
                          "input_tokens_details": {"cached_tokens": 0},
                          "output_tokens_details": {"reasoning_tokens": 0}}}

    async def responses(req: Request):
        b = await req.json()
        model = b["model"]
        if b.get("stream"):
            evs = [
                {"type": "response.created", "sequence_number": 0, "response": response_obj(model, "in_progress")},
                {"type": "response.output_text.delta", "sequence_number": 1, "item_id": "msg_1", "output_index": 0,
                 "content_index": 0, "delta": "Hello!", "logprobs": []},
                {"type": "response.completed", "sequence_number": 2, "response": response_obj(model)},
            ]
            return sse([f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in evs])
        return JSONResponse(response_obj(model))

    async def embeddings(req: Request):
        b = await req.json()
        vec = [0.1, 0.2, 0.3]
        emb = base64.b64encode(struct.pack("<3f", *vec)).decode() if b.get("encoding_format") == "base64" else vec
        return JSONResponse({"object": "list", "model": b["model"],
                             "data": [{"object": "embedding", "index": 0, "embedding": emb}],
                             "usage": {"prompt_tokens": 3, "total_tokens": 3}})

    async def completions(req: Request):
        b = await req.json()
        model = b["model"]
        if b.get("stream"):
            chunks = [{"id": "cmpl-1", "object": "text_completion", "created": now, "model": model,
                       "choices": [{"index": 0, "text": t, "logprobs": None, "finish_reason": f}]}
                      for t, f in (("Hello", None), ("!", "stop"))]
            return sse([f"data: {json.dumps(c)}\n\n" for c in chunks] + ["data: [DONE]\n\n"])
        return JSONResponse({"id": "cmpl-1", "object": "text_completion", "created": now, "model": model,
                             "choices": [{"index": 0, "text": "Hello!", "logprobs": None, "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})

    return Starlette(routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/responses", responses, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
    ])


def run_openai():
    import openai

    with Capture(openai_stub_app) as cap:
        client = openai.OpenAI(api_key="sk-test", base_url=f"{cap.base}/v1", max_retries=0)
        msgs = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello"}]
        r = client.chat.completions.create(model="gpt-4o-mini", messages=msgs)
        assert r.choices[0].message.content == "Hello!"
        text = "".join(c.choices[0].delta.content or "" for c in
                       client.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True) if c.choices)
        assert text == "Hello!", text
        client.responses.create(model="gpt-4.1", input="Say hello", instructions="Be terse.")
        evs = [e.type for e in client.responses.create(model="gpt-4.1", input="Say hello", stream=True)]
        assert evs[-1] == "response.completed", evs
        e = client.embeddings.create(model="text-embedding-3-small", input="hello world")
        assert len(e.data[0].embedding) == 3
        client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hello", max_tokens=5)
        list(client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hello", max_tokens=5, stream=True))
    collect(cap, "openai", f"python openai {version('openai')}, sync OpenAI client against a local stub server",
            require=["chat", "chat-stream", "responses", "responses-stream", "embeddings", "completions",
                     "completions-stream"])


# --------------------------------------------------------------------------------------
# MCP (Node SDK, optional)
# --------------------------------------------------------------------------------------

NODE_CLIENT = r"""
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
const url = new URL(process.argv[2]);
const client = new Client({ name: "aimux-capture-node", version: "1.0.0" });
const transport = new StreamableHTTPClientTransport(url);
await client.connect(transport);
await client.listTools();
await client.callTool({ name: "get_weather", arguments: { location: "Seattle" } });
await client.listResources();
await client.readResource({ uri: "file:///notes/readme.txt" });
await client.listPrompts();
await client.getPrompt({ name: "summarize", arguments: { text: "a long story" } });
await client.complete({ ref: { type: "ref/prompt", name: "summarize" }, argument: { name: "text", value: "sh" } });
await client.ping();
await new Promise((r) => setTimeout(r, 300));
await transport.terminateSession();
await client.close();
"""


def run_node_mcp(workdir: Path):
    if not shutil.which("npm") or not shutil.which("node"):
        print("[capture] node/npm not found: skipping the Node MCP SDK")
        return
    workdir.mkdir(parents=True, exist_ok=True)
    pkg = workdir / "package.json"
    if not pkg.exists():
        pkg.write_text(json.dumps({"name": "aimux-capture-node", "private": True, "type": "module"}))
    sdk_pkg = workdir / "node_modules" / "@modelcontextprotocol" / "sdk" / "package.json"
    if not sdk_pkg.exists() or json.loads(sdk_pkg.read_text())["version"] != NODE_PINS["@modelcontextprotocol/sdk"]:
        print("[capture] npm install " + " ".join(f"{k}@{v}" for k, v in NODE_PINS.items()), flush=True)
        subprocess.check_call(["nice", "-n", "10", "npm", "i", "--no-audit", "--no-fund", "--silent",
                               *[f"{k}@{v}" for k, v in NODE_PINS.items()]], cwd=workdir)
    (workdir / "client.mjs").write_text(NODE_CLIENT)
    sdk_version = json.loads(sdk_pkg.read_text())["version"]
    with Capture(mcp_streamable_app) as cap:
        subprocess.run(["node", "client.mjs", f"{cap.base}/mcp"], cwd=workdir, check=True, timeout=60)
    collect(cap, "mcp-node-2025-11-25",
            f"node @modelcontextprotocol/sdk {sdk_version} (node {subprocess.check_output(['node', '--version'], text=True).strip()}), StreamableHTTPClientTransport",
            require=["initialize", "notifications-initialized", "tools-call", "delete"])


# --------------------------------------------------------------------------------------
# hand-written cases derived from real captures
# --------------------------------------------------------------------------------------

def rebuild(raw: bytes, *, set_headers=None, body: bytes | None = None) -> bytes:
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    set_headers = {k.lower(): v for k, v in (set_headers or {}).items()}
    out = [lines[0]]
    for line in lines[1:]:
        k = line.split(b":", 1)[0].decode().lower()
        if k in set_headers:
            out.append(f"{line.split(b':', 1)[0].decode()}: {set_headers.pop(k)}".encode())
        elif k == "content-length" and body is not None:
            out.append(f"{line.split(b':', 1)[0].decode()}: {len(body)}".encode())
        else:
            out.append(line)
    return b"\r\n".join(out) + b"\r\n\r\n" + (rest if body is None else body)


def add_hand_written():
    by_name = {f.file: f for f in FIXTURES}
    base = by_name.get("mcp-2026-07-28-tools-call.http")
    if base:
        FIXTURES.append(Fixture(
            "mcp-2026-07-28-tools-call-mismatch.http",
            rebuild(base.raw, set_headers={"mcp-name": "delete_everything"}),
            "hand-written: mcp-2026-07-28-tools-call.http with Mcp-Name changed to disagree with params.name "
            "(no SDK sends a mismatch)"))
    base = by_name.get("mcp-2025-11-25-tools-list.http")
    if base:
        _m, _t, _h, body = decode_body(base.raw)
        one = json.loads(body)
        two = dict(one, id=one["id"] + 100, method="tools/call",
                   params={"name": "get_weather", "arguments": {"location": "Oslo"}})
        batch = json.dumps([two, one], separators=(",", ":")).encode()
        FIXTURES.append(Fixture(
            "mcp-2025-03-26-batch.http",
            rebuild(base.raw, set_headers={"mcp-protocol-version": "2025-03-26"}, body=batch),
            "hand-written: JSON-RPC batch (only 2025-03-26 allowed batches; no current SDK sends one), "
            "headers from mcp-2025-11-25-tools-list.http"))
    base = by_name.get("openai-chat-stream.http")
    if base:
        _m, _t, _h, body = decode_body(base.raw)
        chunks = [body[:17], body[17:]]
        chunked = b"".join(f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in chunks) + b"0\r\n\r\n"
        head, _, _ = base.raw.partition(b"\r\n\r\n")
        lines = [l for l in head.split(b"\r\n") if not l.lower().startswith(b"content-length:")]
        lines.insert(len(lines), b"Transfer-Encoding: chunked")
        FIXTURES.append(Fixture(
            "openai-chat-stream-chunked.http", b"\r\n".join(lines) + b"\r\n\r\n" + chunked,
            "hand-written: openai-chat-stream.http re-framed as Transfer-Encoding: chunked in two chunks "
            "(the python client always sends Content-Length)"))


# --------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------

def toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def write_outputs(out: Path):
    out.mkdir(parents=True, exist_ok=True)
    for p in out.glob("*.http"):
        p.unlink()
    names = [f.file for f in FIXTURES]
    dup = {n for n in names if names.count(n) > 1}
    assert not dup, f"duplicate fixture names: {dup}"
    lines = [
        "# Generated by interop-tests/capture/capture.py: real client->server HTTP/1.1 requests captured",
        "# through a byte-logging proxy. Expected intents follow sidecar/INTENTS.md. Do not edit by hand;",
        "# rerun the script instead.",
        "",
    ]
    for f in sorted(FIXTURES, key=lambda f: f.file):
        (out / f.file).write_bytes(f.raw)
        proto, op, target, flags = expect(f.raw)
        lines += ["[[case]]", f"file = {toml_str(f.file)}", f"source = {toml_str(f.source)}",
                  f"protocol = {toml_str(proto)}", f"operation = {toml_str(op)}", f"target = {toml_str(target)}"]
        if flags:
            lines.append(f"flags = [{', '.join(toml_str(x) for x in flags)}]")
        lines.append("")
    (out / "cases.toml").write_text("\n".join(lines))
    print(f"[capture] wrote {len(FIXTURES)} fixtures + cases.toml to {out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    ap.add_argument("--node-dir", type=Path, default=Path(tempfile.gettempdir()) / "aimux-capture-node")
    ap.add_argument("--no-node", action="store_true", help="skip the Node MCP SDK")
    args = ap.parse_args()
    bootstrap(args.venv)

    import logging
    import warnings

    logging.basicConfig(level=logging.CRITICAL)
    warnings.simplefilter("ignore")
    global BG
    BG = Background()
    t0 = time.monotonic()
    for rev in ("2025-03-26", "2025-06-18", None):  # None = the SDK's own offer (2025-11-25)
        run_mcp_handshake(rev)
    run_mcp_handshake("2024-11-05", transport="sse")
    run_mcp_modern()
    if not args.no_node:
        try:
            run_node_mcp(args.node_dir)
        except Exception as e:  # noqa: BLE001
            print(f"[capture] Node MCP SDK skipped: {type(e).__name__}: {e}")
    for binding in ("JSONRPC", "HTTP+JSON"):
        for pv in ("1.0", "0.3"):
            run_a2a(binding, pv)
    run_a2a("HTTP+JSON", "1.0", tenant="acme")
    run_openai()
    add_hand_written()
    write_outputs(args.out)
    print(f"[capture] done in {time.monotonic() - t0:.1f}s")
    logging.disable(logging.CRITICAL)
    BG.loop.call_soon_threadsafe(BG.loop.stop)
    BG.thread.join(2)


if __name__ == "__main__":
    main()
