"""The official MCP Python SDK (PyPI `mcp`, pinned in deploy/setup.sh) against heady-origin's
/mcp: initialize, list the tools, call each one, a bad argument, and an unauthorised call.
Prints one JSON object for the Rust test (tests/mcp.rs) to check.

usage: mcp_client.py URL KEY
"""

import asyncio
import json
import sys

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client


def result(r):
    return {
        "is_error": r.is_error,
        "text": r.content[0].text if r.content else None,
        "structured": r.structured_content,
    }


async def main(url, key):
    out = {}
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=60)) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as s:
                init = await s.initialize()
                out["initialize"] = {
                    "protocol_version": init.protocol_version,
                    "server": init.server_info.name,
                    "tools_capability": init.capabilities.tools is not None,
                }
                listed = await s.list_tools()
                out["tools"] = {t.name: t.input_schema for t in listed.tools}
                out["memory_store"] = result(await s.call_tool(
                    "memory_store", {"content": "the python client stored this row", "session_id": "py-1"}))
                out["memory_search"] = result(await s.call_tool(
                    "memory_search", {"text": "python client stored row", "top_k": 5}))
                out["memory_sessions"] = result(await s.call_tool("memory_sessions", {}))
                out["conductor_route"] = result(await s.call_tool("conductor_route", {"action": "code"}))
                out["chat"] = result(await s.call_tool("chat", {"message": "Say hello to the python client"}))
                out["bad_arguments"] = result(await s.call_tool("memory_search", {"text": "x", "top_k": "ten"}))
                try:
                    await s.call_tool("no_such_tool", {})
                    out["unknown_tool"] = None
                except Exception as e:
                    out["unknown_tool"] = {"type": type(e).__name__, "message": str(e)}
    # No key: the server answers 401 with a Bearer challenge before any session exists.
    async with httpx2.AsyncClient(timeout=30) as http:
        r = await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "x", "version": "0"}}},
            headers={"accept": "application/json, text/event-stream"})
        out["anonymous"] = {"status": r.status_code, "www_authenticate": r.headers.get("www-authenticate")}
    # A wrong key through the SDK itself fails to initialize.
    try:
        bad = {"Authorization": "Bearer hk_" + "0" * 64}
        async with httpx2.AsyncClient(headers=bad, timeout=30) as http:
            async with streamable_http_client(url, http_client=http) as (read, write):
                async with ClientSession(read, write) as s:
                    await asyncio.wait_for(s.initialize(), 20)
        out["bad_key"] = None
    except BaseException as e:  # anyio may wrap the failure in an ExceptionGroup
        out["bad_key"] = {"type": type(e).__name__}
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
