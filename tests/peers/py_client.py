"""Drives the official Python MCP SDK against a URL; prints one JSON line.

    python py_client.py <url> <bearer-token> <mode>

mode: "legacy" (initialize handshake, sessions), "auto" (the SDK probes
the stateless 2026-07-28 protocol first), "2026-07-28", or "sse" (the
legacy HTTP+SSE transport; <url> is then the event stream's URL, .../sse).
"""
import asyncio
import json
import sys

import httpx2
from mcp import Client, ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError


async def low_level(url, token):
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                tools = await session.list_tools()
                r = await session.call_tool("echo", {"message": "from python"})
                return {
                    "protocol": init.protocol_version,
                    "server": init.server_info.name,
                    "tools": sorted(t.name for t in tools.tools),
                    "echo": r.content[0].text,
                    "is_error": r.is_error,
                }


async def high_level(url, token, mode):
    transport = streamable_http_client(url, http_client=httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}))
    async with Client(transport, mode=mode) as client:
        tools = await client.list_tools()
        r = await client.call_tool("get-sum", {"a": 20, "b": 22})
        return {"tools": sorted(t.name for t in tools.tools), "sum": r.content[0].text, "is_error": r.is_error}


async def legacy_sse(url, token):
    sessions = []
    async with sse_client(url, headers={"Authorization": f"Bearer {token}"}, on_session_created=sessions.append) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            tools = await session.list_tools()
            echo = await session.call_tool("echo", {"message": "over legacy sse"})
            total = await session.call_tool("get-sum", {"a": 40, "b": 2})
            # Escalated by the base policy pack, and denied (a send without a
            # grant): both refused at the gateway.
            refused = {}
            for name in ["toggle-simulated-logging", "send-email"]:
                try:
                    await session.call_tool(name, {})
                    refused[name] = None
                except MCPError as e:
                    refused[name] = {"code": e.code, "message": e.message, "data": e.data}
            return {
                "session": sessions[0] if sessions else None,
                "protocol": init.protocol_version,
                "server": init.server_info.name,
                "tools": sorted(t.name for t in tools.tools),
                "echo": echo.content[0].text,
                "sum": total.content[0].text,
                "refused": refused,
            }


async def main():
    url, token, mode = sys.argv[1:4]
    try:
        if mode == "legacy":
            out = await low_level(url, token)
        elif mode == "sse":
            out = await legacy_sse(url, token)
        else:
            out = await high_level(url, token, mode)
    except Exception as e:  # report, do not crash: the Rust test asserts
        out = {"fatal": f"{type(e).__name__}: {e}"}
    print(json.dumps(out))


asyncio.run(main())
