// Servers the browser tests start on 127.0.0.1 and stop: the built page and fixtures, and
// stub OpenAI-compatible chat-completions endpoints that record what reached them.
import http from "node:http";
import fs from "node:fs";
import path from "node:path";

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript",
  ".mjs": "text/javascript",
  ".css": "text/css",
  ".json": "application/json",
  ".wasm": "application/wasm",
  ".jsonl": "application/jsonl",
  ".safetensors": "application/octet-stream",
};

function listen(server) {
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server.address().port)));
}

/**
 * Serves `routes` ({ "/prefix/": dir | (path) => Buffer | null }) and records every request
 * path; `isolated` adds the cross-origin isolation headers. Responses are `no-store`, so a file not requested again was read from the Cache API.
 */
export async function staticServer(routes, { isolated = false } = {}) {
  // COOP + COEP: the page is cross-origin isolated, so its worker loads the threaded build.
  const isolation = isolated
    ? { "cross-origin-opener-policy": "same-origin", "cross-origin-embedder-policy": "require-corp" }
    : {};
  const requests = [];
  const raw = []; // whole request lines with query strings and headers, for secrets checks
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    requests.push(url.pathname);
    raw.push(`${req.url} ${JSON.stringify(req.headers)}`);
    const prefix = Object.keys(routes)
      .filter((p) => url.pathname.startsWith(p))
      .sort((a, b) => b.length - a.length)[0];
    let body = null;
    if (prefix !== undefined) {
      const route = routes[prefix];
      const rest = decodeURIComponent(url.pathname.slice(prefix.length)) || "index.html";
      if (typeof route === "function") body = route(rest);
      else {
        const file = path.join(route, rest);
        if (file.startsWith(route) && fs.existsSync(file) && fs.statSync(file).isFile()) body = fs.readFileSync(file);
      }
    }
    if (!body) {
      res.writeHead(404, { "content-type": "text/plain", "cache-control": "no-store" });
      res.end("not found");
      return;
    }
    res.writeHead(200, {
      "content-type": TYPES[path.extname(url.pathname)] || "application/octet-stream",
      "content-length": body.length,
      "cache-control": "no-store",
      ...isolation,
    });
    res.end(body);
  });
  const port = await listen(server);
  return { url: `http://127.0.0.1:${port}`, requests, raw, close: () => new Promise((r) => server.close(r)) };
}

/**
 * A stub chat-completions endpoint at `/v1`. `calls` records every completion request;
 * `failNext` makes that many next calls answer 500.
 */
export async function stubOpenAI(name) {
  const stub = { calls: [], failNext: 0 };
  const cors = {
    "access-control-allow-origin": "*",
    "access-control-allow-headers": "authorization, content-type",
    "access-control-allow-methods": "POST, OPTIONS",
  };
  const server = http.createServer((req, res) => {
    if (req.method === "OPTIONS") {
      res.writeHead(204, cors);
      res.end();
      return;
    }
    let data = "";
    req.on("data", (c) => (data += c));
    req.on("end", () => {
      const body = JSON.parse(data || "{}");
      const call = { path: req.url, authorization: req.headers.authorization || null, body };
      stub.calls.push(call);
      if (req.url !== "/v1/chat/completions") {
        res.writeHead(404, { ...cors, "content-type": "application/json" });
        res.end(JSON.stringify({ error: { message: `no route ${req.url}` } }));
        return;
      }
      if (stub.failNext > 0) {
        stub.failNext -= 1;
        call.failed = true;
        res.writeHead(500, { ...cors, "content-type": "application/json" });
        res.end(JSON.stringify({ error: { message: `${name} stub failure` } }));
        return;
      }
      const content = body.messages[body.messages.length - 1].content;
      const source = content.split("\n")[1] || content;
      res.writeHead(200, { ...cors, "content-type": "application/json" });
      res.end(
        JSON.stringify({
          id: `stub-${stub.calls.length}`,
          object: "chat.completion",
          model: body.model,
          choices: [{ index: 0, message: { role: "assistant", content: `[${name}] ${source}` }, finish_reason: "stop" }],
        }),
      );
    });
  });
  const port = await listen(server);
  stub.url = `http://127.0.0.1:${port}/v1`;
  stub.close = () => new Promise((r) => server.close(r));
  return stub;
}
