// Drives the official MCP TypeScript SDK client against a URL and prints
// one JSON line with what happened, for the Rust tests to check.
//
//   node client.mjs <url> <bearer-token> <scenario> [json-args]
//
// Scenarios: list-call (list tools, call echo and get-sum), call (one
// tool call: {"name", "arguments"}), script (list the tools, whole
// definitions, then make each call of {"calls": [{"name", "arguments"}]} in
// turn, in one session), session (prints the session id).
// With {"transport": "sse"} in the arguments the client speaks the legacy
// HTTP+SSE transport (<url> is then the event stream's URL, .../sse).
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, token, scenario, rawArgs] = process.argv.slice(2);
const args = rawArgs ? JSON.parse(rawArgs) : {};
const legacy = args.transport === "sse";
const Transport = legacy ? SSEClientTransport : StreamableHTTPClientTransport;
const transport = new Transport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const rpcError = (e) => ({ code: e.code ?? null, message: String(e.message ?? e), data: e.data ?? null });
const client = new Client({ name: "behavry-test-client", version: "1.0.0" });
const out = {};
try {
  await client.connect(transport);
  // Legacy SSE: the session id is in the URL the `endpoint` event named.
  out.session = legacy ? transport._endpoint?.searchParams.get("session_id") ?? null : transport.sessionId ?? null;
  out.server = client.getServerVersion();
  if (scenario === "list-call") {
    const { tools } = await client.listTools();
    out.tools = tools.map((t) => t.name).sort();
    out.echo = await client.callTool({ name: "echo", arguments: { message: "hello through behavry" } });
    out.sum = await client.callTool({ name: "get-sum", arguments: { a: 2, b: 3 } });
  } else if (scenario === "call") {
    try {
      out.result = await client.callTool({ name: args.name, arguments: args.arguments ?? {} });
    } catch (e) {
      out.error = rpcError(e);
    }
  } else if (scenario === "script") {
    out.tools = (await client.listTools()).tools;
    out.calls = [];
    for (const call of args.calls ?? []) {
      try {
        out.calls.push({ result: await client.callTool({ name: call.name, arguments: call.arguments ?? {} }) });
      } catch (e) {
        out.calls.push({ error: rpcError(e) });
      }
    }
  }
  if (!legacy) await transport.terminateSession();
  await client.close();
} catch (e) {
  out.fatal = { code: e.code ?? null, message: String(e.message ?? e) };
}
console.log(JSON.stringify(out));
