"""Drives the official Python MCP SDK against a URL; prints one JSON line.

    python py_client.py <url> <bearer-token> <mode>

mode: "legacy" (initialize handshake, sessions), "auto" (the SDK probes
the stateless 2026-07-28 protocol first), or "2026-07-28".
"""
import asyncio
import json
import sys

import httpx2
from mcp import Client, ClientSession
from mcp.client.streamable_http import streamable_http_client


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


async def main():
    url, token, mode = sys.argv[1:4]
    try:
        out = await (low_level(url, token) if mode == "legacy" else high_level(url, token, mode))
    except Exception as e:  # report, do not crash: the Rust test asserts
        out = {"fatal": f"{type(e).__name__}: {e}"}
    print(json.dumps(out))


asyncio.run(main())
