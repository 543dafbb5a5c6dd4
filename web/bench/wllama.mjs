// Browser benchmark of wllama 3.13 (npm @wllama/wllama, llama.cpp compiled to wasm), to compare
// with routelmt-web (web/bench/bench.mjs): prompt prefill on a GGUF file in headless Chromium, wasm
// CPU backend, one case per thread count x prompt length T, each in a fresh browser and profile on
// a cross-origin isolated server (COOP/COEP: SharedArrayBuffer, so wasm threads).
// Run: node web/bench/wllama.mjs --gguf FILE [--threads 1,2] [--tokens 64,256] [--iters 5]
//      [--text FILE] [--prompts-out FILE.json] [--log]
// Measures, and prints as one JSON line per case and a markdown table:
//   - load: loadModelFromUrl() of the GGUF served on 127.0.0.1 until the model is ready (download
//     into wllama's OPFS cache, worker and wasm start, weights read, llama.cpp's warm-up);
//   - prefill: createCompletion({ prompt, max_tokens: 1, temperature: 0, cache_prompt: false }), once
//     to warm up, then --iters timed: T prompt tokens in one batch into an empty KV cache and one
//     greedy token; tok/s = T / wall-clock time of the call in the page (median), with llama.cpp's
//     own timings.prompt_per_second beside it. Every call must report prompt_n == T, cache_n == 0;
//   - peak wasm memory: buffer.byteLength of wllama's WebAssembly.Memory (the Emscripten module's
//     wasmMemory, shared with its pthreads), read in wllama's worker by a probe appended to its code,
//     after load and after every prefill; wasm memory never shrinks, so the last reading is the peak;
//   - peak browser RSS: the sum over the Chromium process tree, from /proc every 200 ms (PSS: 2 s);
//   - other CPU load: cores busy outside the browser during the timed prefills (a build, say).
// Prompts: wllama 3.x has no tokenize() and no token-id prompts (a prompt is a string), so a prompt
// is a prefix of a fixed English text (or --text FILE) cut to exactly T tokens of llama.cpp's own
// tokenizer (BOS included if the model adds one). Counting costs no compute: a prompt longer than
// n_ctx is refused with its token count, so count(P) = count(P + filler) - count(filler).
// --prompts-out writes the prompts ({ "T": text }) so the other side can tokenize the same text.
// Settings: n_ctx = T + 64 rounded up to 256, n_batch = n_ubatch = T, n_parallel 1, n_gpu_layers 0
// (no WebGPU); flash attention (auto: on) and the rest at wllama's defaults.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import puppeteer from "puppeteer-core";
import { staticServer } from "../tests/servers.mjs";
import { memorySampler, processTree } from "./procs.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const WLLAMA = path.join(ROOT, "web/node_modules/@wllama/wllama");
const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const gguf = arg("gguf", null);
const threadsList = arg("threads", "1,2").split(",").map(Number);
const tokensList = arg("tokens", "64,256").split(",").map(Number);
const iters = Number(arg("iters", "5"));
const textFile = arg("text", null);
const promptsOut = arg("prompts-out", null);
const verbose = process.argv.includes("--log"); // wllama's and llama.cpp's log on stderr
if (!gguf) throw new Error("usage: node web/bench/wllama.mjs --gguf FILE [--threads 1,2] [--tokens 64,256] [--iters 5]");
if (process.argv.includes("--ids-from"))
  throw new Error("--ids-from: wllama 3.13 takes no token ids (a completion prompt is a string, and tokenize() is gone since 3.0); use --text");
const version = JSON.parse(fs.readFileSync(path.join(WLLAMA, "package.json"))).version;

// The source text the prompts are cut from (its words, repeated if a prompt needs more).
const TEXT = textFile ? fs.readFileSync(textFile, "utf8") : `
The river that runs through the old town was once the reason the town existed at all. Merchants
came up from the coast with salt, cloth and wine, and went back down with timber, grain and wool.
Every spring the water rose over the lower streets, and every summer the families who lived there
scrubbed the mud from their floors and began again. The council built a stone wall along the bank
in the fourteenth century, then a second one when the first proved too low, and finally a system of
locks and weirs that tamed the current for good. With the floods gone, the riverside filled with
warehouses, breweries and workshops, and the town grew faster than anyone had planned. Narrow lanes
climbed the hill towards the cathedral, whose tower took almost two hundred years to finish because
the money kept running out. When the railway arrived, the barges slowly disappeared, the warehouses
fell empty, and for a few decades the river was something people turned their backs on. Today the
old quays are lined with cafes, a small museum tells the story of the salt trade, and in the evening
students sit on the steps by the water with their bicycles leaning against the railings. The locks
still work, although they mostly lift rowing boats and the occasional tourist cruise. Visitors who
climb the tower on a clear day can follow the river with their eyes all the way to the hills in the
south, where it begins as a cold stream between pine trees. Local historians like to say that the
town has been rebuilt at least four times, after two fires, a war and an economic collapse, and that
each time the new streets followed the old ones almost exactly, as if the map had been drawn into
the ground itself. The market square is the best example: its shape has not changed since the first
charter was granted, even though not a single building from that time survives. On Saturdays farmers
from the surrounding villages still sell vegetables, cheese, honey and bread there, and the bell in
the town hall rings every hour, a few seconds late, as it has for as long as anyone can remember.
`;
const WORDS = TEXT.split(/\s+/).filter(Boolean);

// The page: wllama's ES module, served from web/node_modules, and a probe in its worker. wllama
// builds its worker from `new Blob([code])` with code starting "const RUN_OPTIONS"; the Blob
// wrapper appends to that code a message handler that answers { benchProbe } with the size of the
// module's wasm Memory, and passes every other message to wllama's own handler.
const PROBE = `
;{
  const wllamaOnMessage = onmessage;
  onmessage = (e) => {
    if (e.data && e.data.benchProbe) {
      const memory = Module && Module.wasmMemory;
      postMessage({ benchProbe: e.data.benchProbe, bytes: memory ? memory.buffer.byteLength : null });
      return;
    }
    return wllamaOnMessage(e);
  };
}`;
const PAGE = `<!doctype html><meta charset="utf-8"><title>wllama bench</title>
<script>
  let workerBlob = null;
  let workerUrl = null;
  const NativeBlob = Blob;
  window.Blob = class extends NativeBlob {
    constructor(parts, options) {
      const worker = Array.isArray(parts) && typeof parts[0] === "string" && parts[0].startsWith("const RUN_OPTIONS");
      super(worker ? [...parts, ${JSON.stringify(PROBE)}] : parts, options);
      if (worker) workerBlob = this;
    }
  };
  const createObjectURL = URL.createObjectURL;
  URL.createObjectURL = (object) => {
    const url = createObjectURL(object);
    if (object === workerBlob) workerUrl = url;
    return url;
  };
  const NativeWorker = Worker;
  let worker = null;
  window.Worker = class extends NativeWorker {
    constructor(url, options) {
      super(url, options);
      if (String(url) === workerUrl) worker = this;
    }
  };
  /** The wasm memory size of the wllama worker, in bytes. */
  window.wasmBytes = () => {
    if (!worker) throw new Error("wllama's worker was not found (its code no longer starts with const RUN_OPTIONS?)");
    const id = Math.random();
    return new Promise((resolve) => {
      const on = (e) => {
        if (e.data && e.data.benchProbe === id) {
          worker.removeEventListener("message", on);
          resolve(e.data.bytes);
        }
      };
      worker.addEventListener("message", on);
      worker.postMessage({ benchProbe: id });
    });
  };
</script>
<script type="module">
  import { Wllama } from "/wllama/esm/index.js";
  window.Wllama = Wllama;
  window.ready = true;
</script>`;

const server = await staticServer(
  {
    "/wllama/": WLLAMA,
    "/gguf/": path.dirname(path.resolve(gguf)),
    "/index.html": () => Buffer.from(PAGE),
    "/favicon.ico": () => Buffer.alloc(0),
  },
  { isolated: true },
);
const modelUrl = `${server.url}/gguf/${path.basename(gguf)}`;

/** CPU time (in clock ticks) of the whole machine and of the process tree of `root`. */
function cpuTicks(root) {
  // user nice system idle iowait irq softirq steal (guest time is already in user)
  const all = fs.readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1, 9).map(Number);
  const busy = all.reduce((a, b) => a + b, 0) - all[3] - all[4]; // minus idle and iowait
  let tree = 0;
  for (const pid of processTree(root)) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      tree += Number(f[11]) + Number(f[12]); // utime, stime
    } catch {}
  }
  return { busy, tree, t: performance.now() };
}

/** One case: a fresh browser, load, prompt of exactly `tokens` tokens, warm-up, `iters` timed prefills. */
async function runCase(threads, tokens) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "wllama-bench-"));
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    userDataDir: profile,
    protocolTimeout: 3_600_000,
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
  const root = browser.process().pid;
  const sampler = memorySampler(root);
  try {
    const page = await browser.newPage();
    page.on("console", (m) => {
      // wllama's errors and warnings (with --log, all its log), less the refusals that count tokens
      if (verbose || ((m.type() === "error" || m.type() === "warn") && !/exceeds the available context size|Model returned an error/.test(m.text())))
        console.error(`  [page ${m.type()}] ${m.text().slice(0, 300)}`);
    });
    page.on("pageerror", (e) => console.error(`  [page error] ${e.message}`));
    await page.goto(`${server.url}/index.html`);
    await page.waitForFunction(() => window.ready === true);
    const nCtx = Math.ceil((tokens + 64) / 256) * 256;
    const load = await page.evaluate(
      async (url, threads, tokens, nCtx, verbose) => {
        const quiet = verbose ? console : { debug() {}, log() {}, warn: console.warn, error: console.error };
        const t0 = performance.now();
        let downloaded = null;
        window.wl = new window.Wllama({ default: "/wllama/esm/wasm/wllama.wasm" }, { logger: quiet });
        await window.wl.loadModelFromUrl(url, {
          n_threads: threads, n_ctx: nCtx, n_batch: tokens, n_ubatch: tokens, n_parallel: 1, n_gpu_layers: 0,
          progressCallback: ({ loaded, total }) => { if (loaded === total && downloaded === null) downloaded = performance.now() - t0; },
        });
        const ms = performance.now() - t0;
        const info = window.wl.getLoadedContextInfo();
        return {
          ms, downloaded, isolated: self.crossOriginIsolated, multithread: window.wl.isMultithread(),
          threads: window.wl.getNumThreads(), addBos: window.wl.mustAddBosToken(), nCtx: info.n_ctx,
          nBatch: info.n_batch, nUbatch: info.n_ubatch, wasmBytes: await window.wasmBytes(),
        };
      },
      modelUrl, threads, tokens, nCtx, verbose,
    );
    if (!load.isolated) throw new Error("the page is not cross-origin isolated");
    if (load.threads !== threads) throw new Error(`wllama runs ${load.threads} thread(s), not ${threads}`);

    // The prompt: the shortest run of WORDS of at least T tokens; if that is more than T, the
    // words before its last one plus a cut of that word, or else plus " a" words, to make exactly T.
    const count = (text) =>
      page.evaluate(async (text, nCtx) => {
        try {
          await window.wl.createCompletion({ prompt: text + " the".repeat(nCtx + 16), max_tokens: 1, cache_prompt: false });
        } catch (e) {
          const m = /request \((\d+) tokens\) exceeds/.exec(e.message);
          if (m) return Number(m[1]);
          throw e;
        }
        throw new Error("the token-counting prompt was not refused");
      }, text, load.nCtx);
    const filler = await count("");
    const tokensOf = async (text) => (await count(text)) - filler + (load.addBos ? 1 : 0);
    const words = (n) => Array.from({ length: n }, (_, i) => WORDS[i % WORDS.length]).join(" ");
    let lo = 0; // tokensOf(words(lo)) < T <= tokensOf(words(hi))
    let hi = tokens;
    while ((await tokensOf(words(hi))) < tokens) (lo = hi), (hi *= 2);
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if ((await tokensOf(words(mid))) < tokens) lo = mid;
      else hi = mid;
    }
    let prompt = words(hi);
    if ((await tokensOf(prompt)) !== tokens) {
      const base = words(lo);
      const last = WORDS[lo % WORDS.length];
      prompt = null;
      for (let k = 1; k < last.length && prompt === null; k++) {
        const cut = `${base} ${last.slice(0, k)}`.trimStart();
        if ((await tokensOf(cut)) === tokens) prompt = cut;
      }
      if (prompt === null) prompt = (base + " a".repeat(tokens - (await tokensOf(base)))).trimStart();
    }

    /** One prefill: wall-clock ms in the page and llama.cpp's timings. */
    const prefill = () =>
      page.evaluate(async (prompt) => {
        const t = performance.now();
        const r = await window.wl.createCompletion({ prompt, max_tokens: 1, temperature: 0, cache_prompt: false });
        return { ms: performance.now() - t, timings: r.timings, promptTokens: r.usage.prompt_tokens };
      }, prompt);
    const check = (r) => {
      if (r.timings.prompt_n !== tokens || r.timings.cache_n !== 0 || r.promptTokens !== tokens)
        throw new Error(`prefill of ${r.timings.prompt_n} tokens (${r.timings.cache_n} cached), expected ${tokens}`);
    };
    check(await prefill()); // warm-up
    const runs = [];
    const before = cpuTicks(root);
    for (let i = 0; i < iters; i++) {
      const r = await prefill();
      check(r);
      runs.push(r);
    }
    const after = cpuTicks(root);
    const wasmBytes = await page.evaluate(() => window.wasmBytes());
    const peak = sampler.stop();
    const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const seconds = (after.t - before.t) / 1000;
    const hz = 100; // USER_HZ: /proc clock ticks per second on Linux
    return {
      engine: `wllama ${version}`, model: path.basename(gguf), threads, multithread: load.multithread, tokens,
      prompt_tokens: runs.length ? runs[0].timings.prompt_n : null, n_ctx: load.nCtx, n_batch: load.nBatch, n_ubatch: load.nUbatch,
      load_ms: load.ms, download_ms: load.downloaded,
      tok_s: runs.length ? tokens / (median(runs.map((r) => r.ms)) / 1000) : null,
      samples_tok_s: runs.map((r) => tokens / (r.ms / 1000)),
      llama_tok_s: runs.length ? median(runs.map((r) => r.timings.prompt_per_second)) : null,
      samples_ms: runs.map((r) => r.ms), llama_prompt_ms: runs.map((r) => r.timings.prompt_ms),
      wasm_mib_after_load: load.wasmBytes / 2 ** 20, peak_wasm_mib: Math.max(load.wasmBytes, wasmBytes) / 2 ** 20,
      peak_rss_mib: peak.rss / 2 ** 20, peak_pss_mib: peak.pss / 2 ** 20,
      other_cpu: seconds > 0 ? ((after.busy - before.busy) - (after.tree - before.tree)) / hz / seconds : null,
      prompt,
    };
  } finally {
    sampler.stop();
    await browser.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

const rows = [];
for (const threads of threadsList) {
  for (const tokens of tokensList) {
    const row = await runCase(threads, tokens);
    const { prompt, ...line } = row;
    console.log(JSON.stringify(line));
    rows.push(row);
  }
}
await server.close();
if (promptsOut) fs.writeFileSync(promptsOut, JSON.stringify(Object.fromEntries(rows.map((r) => [r.tokens, r.prompt])), null, 1) + "\n");

const f = (x, d) => (x === null ? "-" : x.toFixed(d));
console.log(`\nwllama ${version}, ${path.basename(gguf)}, wasm CPU, ${os.cpus().length} cores; median of ${iters} prefills after 1 warm-up`);
console.log(
  "\n| threads | tokens | load (ms) | of which download (ms) | prefill tok/s (median, wall) | llama.cpp prompt tok/s (median) | samples tok/s (wall) | peak wasm (MiB) | peak browser RSS (MiB) | peak browser PSS (MiB) | other CPU load (cores) |",
);
console.log("|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|");
for (const r of rows) {
  const samples = r.samples_tok_s.map((x) => x.toFixed(1)).join(", ");
  console.log(
    `| ${r.threads} | ${r.tokens} | ${f(r.load_ms, 0)} | ${f(r.download_ms, 0)} | ${f(r.tok_s, 1)} | ${f(r.llama_tok_s, 1)} | ${samples} | ` +
      `${f(r.peak_wasm_mib, 0)} | ${f(r.peak_rss_mib, 0)} | ${f(r.peak_pss_mib, 0)} | ${f(r.other_cpu, 2)} |`,
  );
}
