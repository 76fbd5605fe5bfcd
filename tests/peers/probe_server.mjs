// A stdio MCP server (official TypeScript SDK) that reports what the
// process it runs in can see and do: its user, working directory,
// environment names, resource limits, and whether it can read a file.
// The tests run it as an operator catalogue entry to check how the
// gateway confines stdio servers.
import { readFileSync } from "node:fs";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { CallToolRequestSchema, ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const server = new Server({ name: "probe", version: "1.0.0" }, { capabilities: { tools: {} } });

server.setRequestHandler(ListToolsRequestSchema, async () => ({
  tools: [
    {
      name: "inspect",
      description: "Reports the server process's user, directory, environment and limits, and tries to read a file.",
      inputSchema: { type: "object", properties: { path: { type: "string" } } },
      annotations: { readOnlyHint: true },
    },
  ],
}));

server.setRequestHandler(CallToolRequestSchema, async (request) => {
  const path = request.params.arguments?.path;
  let read = null;
  if (path) {
    try {
      read = `read ${readFileSync(path).length} bytes`;
    } catch (e) {
      read = e.code ?? String(e);
    }
  }
  const limits = readFileSync("/proc/self/limits", "utf8")
    .split("\n")
    .filter((l) => l.startsWith("Max open files") || l.startsWith("Max core file size"));
  const report = {
    uid: process.getuid(),
    cwd: process.cwd(),
    home: process.env.HOME ?? null,
    env: Object.keys(process.env).sort(),
    probe_token: process.env.PROBE_TOKEN ?? null,
    read,
    limits,
  };
  return { content: [{ type: "text", text: JSON.stringify(report) }] };
});

await server.connect(new StdioServerTransport());
