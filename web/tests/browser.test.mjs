// The browser package and the page in real headless Chromium (Debian's), on WebGPU
// (SwiftShader) and on the wasm CPU backend, against transformers' goldens and the native
// binary. Every server runs on 127.0.0.1 and is stopped at the end.
// Run: scripts/test.sh, or `node --test web/tests/browser.test.mjs` after `trunk build --release --offline`.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import puppeteer from "puppeteer-core";
import { staticServer, stubOpenAI } from "./servers.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const DIST = path.join(ROOT, "web/dist");
const FIXTURES = path.join(ROOT, "tests/fixtures");
const TOKENIZER = path.join(ROOT, "assets/qwen3-tokenizer/tokenizer.json");
const ARTIFACTS = process.env.ROUTELMT_ARTIFACTS || path.join(ROOT, "web/test-artifacts");
const TARGET = process.env.CARGO_TARGET_DIR || path.join(os.homedir(), ".cache/routelmt-target");
const BIN = process.env.ROUTELMT_BIN || path.join(TARGET, "debug/routelmt");
// The real SmolLM2-135M-Instruct Q4_1 GGUF (models/fetch.sh; scripts/test.sh sets this).
const SMOLLM2 = process.env.ROUTELMT_SMOLLM2_GGUF;
/** transformers' goldens are matched natively to 1e-4; the browser is held to the same. */
const GOLDEN_TOL = 1e-4;
const LARGE_KEY = "sk-large-SECRET-4711";
const SMALL_KEY = "sk-small-SECRET-0815";
/** Poll on a timer: animation frames are throttled in pages headless Chromium backgrounds. */
const POLL = { polling: 200, timeout: 60_000 };

let server;
let browser;
let profile;

/** Byte position of the u32 type field of tensor `name` in a GGUF file's tensor table. */
function ggufTypeField(bytes, name) {
  const key = Buffer.alloc(8 + name.length);
  key.writeBigUInt64LE(BigInt(name.length));
  key.write(name, 8);
  const at = bytes.indexOf(key) + key.length;
  return at + 4 + 8 * bytes.readUInt32LE(at);
}

/** Broken checkpoints: the tiny fixture's config with a damaged model.safetensors, or the tiny
 * Qwen3 GGUF cut in half or with a tensor of a type nobody decodes here (Q3_K). */
function broken(rest) {
  if (rest.endsWith(".gguf")) {
    const bytes = Buffer.from(fs.readFileSync(path.join(FIXTURES, "gguf/tiny-qwen3.gguf")));
    if (rest === "truncated.gguf") return bytes.subarray(0, Math.floor(bytes.length / 2));
    if (rest === "q3k.gguf") {
      bytes.writeUInt32LE(11, ggufTypeField(bytes, "blk.0.attn_q.weight"));
      return bytes;
    }
    return null;
  }
  const dir = path.join(FIXTURES, "models/tiny-gqa");
  const [kind, file] = rest.split("/");
  if (file === "config.json") return fs.readFileSync(path.join(dir, "config.json"));
  if (file !== "model.safetensors") return null;
  const bytes = fs.readFileSync(path.join(dir, "model.safetensors"));
  const n = Number(bytes.readBigUInt64LE(0));
  if (kind === "truncated") return bytes.subarray(0, Math.floor(bytes.length / 2));
  if (kind === "short") return bytes.subarray(0, 5);
  if (kind === "header") return bytes.subarray(0, 8 + Math.floor(n / 2));
  if (kind === "offsets") {
    // One tensor claims fewer bytes than its shape needs.
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString());
    const t = header["model.norm.weight"];
    t.data_offsets = [t.data_offsets[0], t.data_offsets[0] + 4];
    let json = JSON.stringify(header);
    json += " ".repeat(Math.max(0, n - json.length));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    return Buffer.concat([len, Buffer.from(json), bytes.subarray(8 + n)]);
  }
  return null;
}

before(async () => {
  assert.ok(fs.existsSync(path.join(DIST, "index.html")), "build the page first: trunk build --release --offline");
  server = await staticServer({
    "/": DIST,
    "/fixtures/": FIXTURES,
    "/harness.html": () => fs.readFileSync(path.join(ROOT, "web/tests/harness.html")),
    "/worker-harness.html": () => fs.readFileSync(path.join(ROOT, "web/tests/worker-harness.html")),
    "/bad/": broken,
    ...(SMOLLM2 ? { "/smollm2/": path.dirname(SMOLLM2) } : {}),
  });
  profile = fs.mkdtempSync(path.join(os.tmpdir(), "routelmt-chromium-"));
  browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    userDataDir: profile,
    args: [
      "--no-sandbox",
      "--disable-dev-shm-usage",
      "--enable-unsafe-webgpu",
      "--enable-features=Vulkan",
      "--use-webgpu-adapter=swiftshader",
    ],
  });
  fs.mkdirSync(ARTIFACTS, { recursive: true });
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.close();
  if (profile) fs.rmSync(profile, { recursive: true, force: true });
});

async function harness({ noWebGpu = false } = {}) {
  const page = await browser.newPage();
  page.on("pageerror", (e) => console.log("harness page error:", e.message));
  if (noWebGpu) {
    await page.evaluateOnNewDocument(() => {
      Object.defineProperty(Navigator.prototype, "gpu", { get: () => undefined, configurable: true });
    });
  }
  await page.goto(`${server.url}/harness.html`);
  await page.evaluate(() => window.ready);
  return page;
}

function maxAbsDiff(a, b) {
  assert.equal(a.length, b.length);
  return a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);
}

function readJsonl(file) {
  return fs.readFileSync(file, "utf8").split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
}

function nativeRoute(extra) {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "routelmt-native-")), "routed.jsonl");
  execFileSync(BIN, [
    "route", "--model", path.join(FIXTURES, "models/tiny-default"), "--router", path.join(ROOT, "web/demo/router"),
    "--tokenizer", TOKENIZER, "--input", path.join(FIXTURES, "sample/valid.jsonl"), "--output", out,
    "--device", "cpu", ...extra,
  ], { stdio: ["ignore", "ignore", "pipe"] });
  return readJsonl(out);
}

for (const device of ["cpu", "webgpu"]) {
  test(`features of the tiny fixture equal transformers' goldens on ${device}`, { timeout: 180_000 }, async () => {
    const golden = JSON.parse(fs.readFileSync(path.join(FIXTURES, "models/tiny-gqa/golden.json"), "utf8"));
    const page = await harness();
    const got = await page.evaluate(
      async (model, device, cases, layers) => {
        const r = await window.routelmt.Router.load({ model, device, weights: "f32" });
        const info = r.info();
        const out = {};
        for (const layer of layers) {
          out[layer] = await r.features(cases.map((c, i) => ({ id: i, input_ids: c.input_ids })), { layer });
        }
        r.free();
        return { info, out };
      },
      `${server.url}/fixtures/models/tiny-gqa/`, device, golden.cases, golden.layers,
    );
    await page.close();
    assert.equal(got.info.device, device, got.info.reason);
    let worst = 0;
    for (const layer of golden.layers) {
      golden.cases.forEach((c, i) => {
        assert.equal(got.out[layer][i].id, i);
        assert.equal(got.out[layer][i].n_tokens, c.input_ids.length);
        worst = Math.max(worst, maxAbsDiff(got.out[layer][i].hidden, c.hidden[String(layer)]));
      });
    }
    console.log(`${device} (${got.info.adapter || "wasm CPU kernels"}): max |Δ| vs transformers ${worst.toExponential(2)}`);
    assert.ok(worst <= GOLDEN_TOL, `max |Δ| ${worst}`);
  });

  test(`scores and decisions equal the native binary's on ${device}`, { timeout: 180_000 }, async () => {
    const records = readJsonl(path.join(FIXTURES, "sample/valid.jsonl"));
    const page = await harness();
    const got = await page.evaluate(
      async (model, router, device, records) => {
        const r = await window.routelmt.Router.load({ model, router, device, weights: "f32" });
        const budget = await r.route(records, { budget: 0.3 });
        const tau = await r.route(records);
        const info = r.info();
        r.free();
        return { budget, tau, info };
      },
      `${server.url}/models/tiny-default/`, `${server.url}/demo/router/`, device, records,
    );
    await page.close();
    assert.equal(got.info.device, device);
    for (const [name, web, native] of [
      ["budget 0.3", got.budget, nativeRoute(["--budget", "0.3"])],
      ["router τ", got.tau, nativeRoute([])],
    ]) {
      assert.equal(web.length, native.length);
      const worst = maxAbsDiff(web.map((r) => r.score), native.map((r) => r.score));
      console.log(`${device} ${name}: max |Δ score| vs native ${worst.toExponential(2)}`);
      assert.ok(worst <= 1e-4, `${name}: scores differ by ${worst}`);
      assert.deepEqual(web.map((r) => [r.id, r.route]), native.map((r) => [r.id, r.route]), name);
    }
    assert.equal(got.budget.filter((r) => r.route === "large").length, Math.floor(0.3 * records.length + 0.5));
  });
}

test("without WebGPU, auto falls back to the CPU and webgpu is a clear error", { timeout: 120_000 }, async () => {
  const page = await harness({ noWebGpu: true });
  const got = await page.evaluate(async (model) => {
    const r = await window.routelmt.Router.load({ model, device: "auto" });
    const info = r.info();
    r.free();
    let error = null;
    try {
      await window.routelmt.Router.load({ model, device: "webgpu" });
    } catch (e) {
      error = e.message;
    }
    return { info, error };
  }, `${server.url}/fixtures/models/tiny-gqa/`);
  await page.close();
  assert.equal(got.info.device, "cpu");
  assert.match(got.info.reason, /no WebGPU/);
  assert.match(got.error, /WebGPU/);
});

async function openPage() {
  const page = await browser.newPage();
  const logs = [];
  page.on("console", (m) => logs.push(m.text()));
  page.on("pageerror", (e) => logs.push(`pageerror: ${e.message}`));
  page.on("request", (r) => logs.push(`request: ${r.url()}`));
  await page.goto(`${server.url}/index.html`);
  await page.waitForFunction(() => document.getElementById("src-lang").options.length === 60, POLL);
  return { page, logs };
}

async function loadOnPage(page, { model, router } = {}) {
  await page.evaluate((model, router) => {
    if (model !== undefined) document.getElementById("model-url").value = model;
    if (router !== undefined) document.getElementById("router-url").value = router;
    document.getElementById("error").textContent = "";
  }, model, router);
  await page.click("#load");
  await page.waitForFunction(() => !document.getElementById("load").disabled, { ...POLL, timeout: 120_000 });
  return page.evaluate(() => ({
    status: document.getElementById("load-status").textContent,
    error: document.getElementById("error").hidden ? "" : document.getElementById("error").textContent,
  }));
}

async function table(page) {
  return page.$$eval("#results tbody tr", (trs) =>
    trs.map((tr) => {
      const td = [...tr.children].map((c) => c.textContent);
      return { id: td[0], src: td[1], score: Number(td[2]), route: td[3], device: td[4], out: td[6], failed: tr.classList.contains("status-failed") };
    }),
  );
}

test("the built page loads, routes, translates each request on its side, keeps keys secret, and reads the model from the cache on reload", { timeout: 600_000 }, async () => {
  const large = await stubOpenAI("large");
  const small = await stubOpenAI("small");
  try {
    const { page, logs } = await openPage();
    await page.evaluate(() => caches.delete("routelmt-files-v1")); // earlier tests cached it
    const modelFile = "/models/tiny-default/model.safetensors";
    const fetched = () => server.requests.filter((p) => p === modelFile).length;
    const before = fetched();
    const first = await loadOnPage(page);
    assert.equal(fetched(), before + 1, "the first load downloads the weights once");
    assert.match(first.status, /^loaded on (webgpu|cpu)/, first.error);

    const input = await page.$("#jsonl");
    await input.uploadFile(path.join(FIXTURES, "sample/requests.jsonl"));
    await page.evaluate(() => {
      const b = document.getElementById("budget");
      b.value = "50";
      b.dispatchEvent(new Event("input"));
    });
    await page.click("#route");
    await page.waitForFunction(() => document.querySelectorAll("#results tbody tr").length > 0, POLL);
    const routed = await table(page);
    const sample = readJsonl(path.join(FIXTURES, "sample/requests.jsonl"));
    assert.equal(routed.length, sample.length);
    const largeIds = routed.filter((r) => r.route === "large").map((r) => r.id);
    assert.equal(largeIds.length, Math.floor(0.5 * sample.length + 0.5));

    await page.type("#large-url", large.url);
    await page.type("#large-key", LARGE_KEY);
    await page.type("#small-url", small.url);
    await page.type("#small-key", SMALL_KEY);
    small.failNext = 1; // one small call fails: it keeps its row and a Retry button
    await page.click("#translate");
    await page.waitForFunction(() => !document.getElementById("translate").disabled, POLL);
    let rows = await table(page);
    assert.equal(rows.filter((r) => r.failed).length, 1);
    assert.match(await page.$eval("#error", (e) => e.textContent), /1 request\(s\) failed/);
    await page.click("#results .retry");
    await page.waitForFunction(() => !document.querySelector("#results .status-failed, #results .status-sending"), POLL);
    rows = await table(page);
    assert.ok(rows.every((r) => r.out.startsWith(`[${r.route}] `)), JSON.stringify(rows));

    // Exactly the large-routed requests reached the large endpoint, the rest the small one.
    const srcOf = (call) => call.body.messages[0].content.split("\n")[1];
    const byId = new Map(sample.map((r) => [String(r.id), r]));
    const expectSrc = (ids) => ids.map((id) => byId.get(id).src).sort();
    const largeDone = large.calls.filter((c) => !c.failed).map(srcOf);
    const smallDone = small.calls.filter((c) => !c.failed).map(srcOf);
    const smallIds = routed.filter((r) => r.route === "small").map((r) => r.id);
    assert.deepEqual(largeDone.map((s) => s.replace(/^[^:]+: /, "")).sort(), expectSrc(largeIds));
    assert.deepEqual(smallDone.map((s) => s.replace(/^[^:]+: /, "")).sort(), expectSrc(smallIds));
    assert.ok(large.calls.every((c) => c.authorization === `Bearer ${LARGE_KEY}` && c.body.model === "LMT-60-8B"));
    assert.ok(small.calls.every((c) => c.authorization === `Bearer ${SMALL_KEY}` && c.body.model === "LMT-60-0.6B"));

    // The keys appear in no log, no URL, no storage and no cache entry.
    const stored = await page.evaluate(async () => {
      const keys = await caches.keys();
      const urls = [];
      for (const k of keys) for (const r of await (await caches.open(k)).keys()) urls.push(r.url);
      return JSON.stringify({ local: { ...localStorage }, session: { ...sessionStorage }, cookie: document.cookie, urls, href: location.href });
    });
    for (const key of [LARGE_KEY, SMALL_KEY]) {
      assert.ok(!logs.some((l) => l.includes(key)), "a key reached the console");
      assert.ok(!stored.includes(key), "a key reached storage or a URL");
      assert.ok(!server.raw.some((line) => line.includes(key)), "a key reached the page's server");
    }
    await page.screenshot({ path: path.join(ARTIFACTS, "page.png"), fullPage: true });
    await page.close();

    // Second load: the model files come from the Cache API, not the server.
    const again = await openPage();
    const second = await loadOnPage(again.page);
    assert.match(second.status, /^loaded on/, second.error);
    assert.equal(fetched(), before + 1, "model re-fetched");
    await again.page.close();
  } finally {
    await large.close();
    await small.close();
  }
});

test("bad inputs give a clear message on the page, and the page keeps working", { timeout: 300_000 }, async () => {
  const { page } = await openPage();
  const missing = await loadOnPage(page, { model: "/nope/", router: "" });
  assert.match(missing.error, /nope\/config\.json: HTTP 404/);
  const cut = await loadOnPage(page, { model: "/bad/truncated/", router: "" });
  assert.match(cut.error, /model\.safetensors: truncated: tensor '.*' ends at byte/);
  const short = await loadOnPage(page, { model: "/bad/short/", router: "" });
  assert.match(short.error, /model\.safetensors: not a valid safetensors file \(too short\)/);
  const header = await loadOnPage(page, { model: "/bad/header/", router: "" });
  assert.match(header.error, /model\.safetensors: truncated: the header needs/);
  const offsets = await loadOnPage(page, { model: "/bad/offsets/", router: "" });
  assert.match(offsets.error, /tensor 'model\.norm\.weight': data_offsets .* do not hold/);
  const wrong = await loadOnPage(page, { model: "/fixtures/models/tiny-gqa/", router: "/demo/router/" });
  assert.match(wrong.error, /router\.json: .*fingerprint/);
  const ok = await loadOnPage(page, { model: "models/tiny-default/", router: "demo/router/" });
  assert.match(ok.status, /^loaded on/, ok.error);
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "routelmt-bad-")), "bad.jsonl");
  fs.writeFileSync(file, '{"id": 1, "src": "Hallo", "src_lang": "de", "tgt_lang": "en"}\n{"id": 2, "src": "x", "src_lang": "xx", "tgt_lang": "en"}\n');
  await (await page.$("#jsonl")).uploadFile(file);
  await page.click("#route");
  await page.waitForFunction(() => !document.getElementById("error").hidden, POLL);
  assert.match(await page.$eval("#error", (e) => e.textContent), /record 2: unknown language code 'xx'/);
  await page.screenshot({ path: path.join(ARTIFACTS, "bad-input.png"), fullPage: true });
  await page.close();
});

test("a cross-origin isolated page runs the wasm CPU path on a thread pool, with the single-threaded build's exact results", { timeout: 300_000 }, async () => {
  const isolated = await staticServer({
    "/": DIST,
    "/worker-harness.html": () => fs.readFileSync(path.join(ROOT, "web/tests/worker-harness.html")),
  }, { isolated: true });
  // Enough tokens (about 400 stacked) for the GEMM's row-split path as well as its column path.
  const records = readJsonl(path.join(FIXTURES, "sample/requests.jsonl")).concat(readJsonl(path.join(FIXTURES, "sample/valid.jsonl")));
  const run = async (base) => {
    const page = await browser.newPage();
    page.on("pageerror", (e) => console.log("worker harness page error:", e.message));
    await page.goto(`${base}/worker-harness.html`);
    await page.waitForFunction(() => window.ready === true, POLL);
    const got = await page.evaluate(async (model, records) => {
      const client = new window.RouterClient();
      const info = (await client.call("load", { model, device: "cpu" })).result;
      await client.call("features", { records }); // warm-up: the engine tiers up the wasm code
      const { result, ms } = await client.call("features", { records });
      return { isolated: self.crossOriginIsolated, cores: navigator.hardwareConcurrency, info, features: result, ms };
    }, `${base}/models/tiny-default/`, records);
    await page.close();
    return got;
  };
  try {
    const single = await run(server.url);
    const multi = await run(isolated.url);
    const tokens = single.features.reduce((n, f) => n + f.n_tokens, 0);
    console.log(`wasm CPU, ${records.length} requests (${tokens} tokens), second call: 1 thread ${single.ms.toFixed(0)} ms, ` +
      `${multi.info.cpu_threads} threads ${multi.ms.toFixed(0)} ms`);
    assert.ok(tokens >= 288, `only ${tokens} tokens`);
    assert.equal(single.isolated, false);
    assert.equal(single.info.device, "cpu");
    assert.equal(single.info.cpu_threads, 1);
    assert.equal(multi.isolated, true);
    assert.equal(multi.info.device, "cpu");
    assert.equal(multi.info.cpu_threads, Math.max(1, multi.cores));
    assert.deepEqual(multi.features, single.features);
  } finally {
    await isolated.close();
  }
});

test("a model folder given as picked files loads like its URL", { timeout: 120_000 }, async () => {
  const page = await harness();
  const got = await page.evaluate(async (base) => {
    const names = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"];
    const files = [];
    for (const name of names) {
      const blob = await (await fetch(base + name)).blob();
      files.push(new File([blob], name));
    }
    const records = [{ id: "a", src: "Guten Morgen!", src_lang: "de", tgt_lang: "en" }];
    const byFiles = await window.routelmt.Router.load({ model: files, device: "cpu" });
    const byUrl = await window.routelmt.Router.load({ model: base, device: "cpu" });
    const out = [await byFiles.features(records), await byUrl.features(records)];
    let missing = null;
    try {
      await window.routelmt.Router.load({ model: files.slice(1), device: "cpu" });
    } catch (e) {
      missing = e.message;
    }
    return { out, missing };
  }, `${server.url}/models/tiny-default/`);
  await page.close();
  assert.deepEqual(got.out[0], got.out[1]);
  assert.ok(got.out[0][0].n_tokens > 10);
  assert.match(got.missing, /config\.json: not among the picked files/);
});

/** `routelmt features` with input ids, natively (`env` added to the environment). */
function nativeFeatures(model, ids, extra, env = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "routelmt-native-"));
  const input = path.join(dir, "ids.jsonl");
  fs.writeFileSync(input, ids.map((input_ids, id) => JSON.stringify({ id, input_ids })).join("\n") + "\n");
  const out = path.join(dir, "features.jsonl");
  execFileSync(BIN, ["features", "--model", model, "--input", input, "--output", out, "--device", "cpu", ...extra],
    { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, ...env } });
  return readJsonl(out);
}

test("a GGUF file loads by URL and by File: f32 equals transformers, q8 the native CLI's q8, a reload fetches nothing", { timeout: 300_000 }, async () => {
  const golden = JSON.parse(fs.readFileSync(path.join(FIXTURES, "gguf/tiny-qwen3.golden.json"), "utf8"));
  const layer = golden.num_hidden_layers;
  const cases = golden.cases.map((c) => c.input_ids);
  const page = await harness();
  const requests = [];
  page.on("request", (r) => requests.push(r.url()));
  const url = `${server.url}/fixtures/gguf/tiny-qwen3.gguf`;
  const run = (source, weights) => page.evaluate(async (source, weights, cases, layer) => {
    let model = source;
    if (source.startsWith("file:")) {
      const blob = await (await fetch(source.slice(5))).blob();
      model = new File([blob], "tiny-qwen3.gguf");
    }
    const r = await window.routelmt.Router.load({ model, device: "cpu", weights });
    const feats = await r.features(cases.map((input_ids, id) => ({ id, input_ids })), { layer });
    const text = await r.features([{ id: "t", src: "Guten Morgen!", src_lang: "de", tgt_lang: "en" }]);
    const info = r.info();
    r.free();
    return { hidden: feats.map((f) => f.hidden), n_tokens: text[0].n_tokens, info };
  }, source, weights, cases, layer);
  const f32 = await run(url, "f32");
  const q8 = await run(url, "q8");
  const before = requests.filter((u) => u.endsWith(".gguf")).length;
  const again = await run(url, "auto");
  const reloadRequests = requests.filter((u) => u.endsWith(".gguf")).length - before;
  const byFile = await run(`file:${url}`, "q8");
  await page.close();

  assert.equal(f32.info.model.format, "gguf");
  assert.equal(f32.info.model.architecture, "qwen3");
  assert.equal(f32.info.weights, "f32");
  assert.equal(q8.info.weights, "q8");
  assert.equal(q8.info.embedding_dtype, "q8");
  assert.equal(again.info.weights, "q8", "auto is q8 on the wasm CPU");
  let worst = 0;
  golden.cases.forEach((c, i) => { worst = Math.max(worst, maxAbsDiff(f32.hidden[i], c.hidden[String(layer)])); });
  console.log(`GGUF f32 in the browser vs transformers: max |Δ| ${worst.toExponential(2)}`);
  assert.ok(worst <= GOLDEN_TOL, `max |Δ| ${worst}`);
  // q8 in the browser runs the portable kernel (q8 weights widened to f32): natively the same
  // kernel (ROUTELMT_ISA=portable) gives the same states. The native default on a CPU with
  // AVX-512 VNNI is the int8 kernel, which also rounds the activations to int8: printed only.
  const gguf = path.join(FIXTURES, "gguf/tiny-qwen3.gguf");
  const args = ["--weights", "q8", "--layer", String(layer)];
  const relative = (native) => native.reduce((worst, n, i) => {
    const scale = n.hidden.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    return Math.max(worst, maxAbsDiff(q8.hidden[i], n.hidden) / scale);
  }, 0);
  const rel = relative(nativeFeatures(gguf, cases, args, { ROUTELMT_ISA: "portable" }));
  const relBest = relative(nativeFeatures(gguf, cases, args));
  console.log(`GGUF q8 in the browser vs the native CLI's q8: max relative |Δ| ${rel.toExponential(2)} (same kernel), ${relBest.toExponential(2)} (this CPU's best kernel)`);
  assert.ok(rel <= 1e-5, `relative ${rel}`);
  assert.deepEqual(byFile.hidden, q8.hidden, "a picked File loads like its URL");
  assert.deepEqual(again.hidden, q8.hidden);
  assert.ok(f32.n_tokens > 5, "the GGUF's own tokenizer and chat template");
  assert.equal(reloadRequests, 0, "a reload reads the GGUF from the Cache API");
});

test("a 4-bit GGUF (SmolLM2 Q4_1) loads as q4 by default on the wasm CPU and equals the native CLI's q4", { timeout: 300_000 }, async () => {
  assert.ok(SMOLLM2, "set ROUTELMT_SMOLLM2_GGUF (scripts/test.sh does: models/fetch.sh smollm2-135m-instruct-q4_1)");
  const cases = [[1, 2, 3, 400], [100, 2000, 30000, 5, 6, 7, 8, 9, 10, 11]];
  const page = await harness();
  const url = `${server.url}/smollm2/${path.basename(SMOLLM2)}`;
  const got = await page.evaluate(async (url, cases) => {
    const r = await window.routelmt.Router.load({ model: url, device: "cpu" });
    const feats = await r.features(cases.map((input_ids, id) => ({ id, input_ids })));
    const info = r.info();
    r.free();
    return { hidden: feats.map((f) => f.hidden), info };
  }, url, cases);
  await page.close();
  assert.equal(got.info.weights, "q4", "auto is q4 for a 4-bit file on the wasm CPU");
  assert.equal(got.info.embedding_dtype, "q8");
  // Natively the same kernel (ROUTELMT_ISA=portable: q4 widened to f32) gives the same states.
  const native = nativeFeatures(SMOLLM2, cases, ["--weights", "q4"], { ROUTELMT_ISA: "portable" });
  const rel = native.reduce((worst, n, i) => {
    const scale = n.hidden.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    return Math.max(worst, maxAbsDiff(got.hidden[i], n.hidden) / scale);
  }, 0);
  console.log(`SmolLM2 Q4_1 GGUF as q4 in the browser vs the native CLI's q4: max relative |Δ| ${rel.toExponential(2)}; weights ${got.info.weight_bytes} bytes, embedding ${got.info.embedding_bytes}, wasm memory ${got.info.wasm_memory_bytes}`);
  assert.ok(rel <= 1e-5, `relative ${rel}`);
});

test("a truncated GGUF and one with a tensor type it cannot read reject with one-line errors", { timeout: 120_000 }, async () => {
  const page = await harness();
  const errors = await page.evaluate(async (base) => {
    const out = {};
    for (const name of ["truncated.gguf", "q3k.gguf"]) {
      try {
        await window.routelmt.Router.load({ model: base + name, device: "cpu" });
        out[name] = "loaded";
      } catch (e) {
        out[name] = e.message;
      }
    }
    return out;
  }, `${server.url}/bad/`);
  await page.close();
  for (const message of Object.values(errors)) assert.ok(!message.includes("\n"), message);
  assert.match(errors["truncated.gguf"], /truncated\.gguf: truncated: tensor '/);
  assert.match(errors["q3k.gguf"], /q3k\.gguf: tensor 'blk\.0\.attn_q\.weight' has type Q3_K/);
});
