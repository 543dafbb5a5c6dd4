// Browser benchmark: load time, prefill latency and peak wasm memory of the routelmt-web
// package in headless Chromium, on the wasm CPU backend and on WebGPU (SwiftShader here), for
// the tiny default model and a full-size random Qwen3-0.6B (web/bench/make_full_size.mjs).
// Prints one JSON line per run and a markdown table. Needs web/dist (trunk build).
// Run: node web/bench/bench.mjs [--full DIR] [--gguf FILE] [--only tiny|full|gguf] [--iters N]
//      [--tokens T[,T...]] [--devices cpu,webgpu,cpu-threads] [--passes cold,cached]
//      [--weights auto|f32|f16|q8|q4]   (--iters 0: load and memory only)
// --gguf FILE: one GGUF file (e.g. the SmolLM2 Q4_1 of models/fetch.sh), loaded by URL.
// cpu-threads: the wasm CPU path in the page's model worker on a cross-origin isolated server,
// so the threaded build (web/pkg/threads) with one thread per core; its wasm memory is not read.
// The peak RSS (and PSS) of the whole browser, all its processes summed, is sampled over the
// whole run (web/bench/procs.mjs): run one model and device per invocation to read it per case.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import puppeteer from "puppeteer-core";
import { staticServer } from "../tests/servers.mjs";
import { memorySampler } from "./procs.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const full = arg("full", null);
const iters = Number(arg("iters", "3"));
// Prompt lengths: each load times every length in turn (the same ids as before for 64).
const tokenCounts = arg("tokens", "64").split(",").map(Number);
const devices = arg("devices", "cpu,webgpu").split(",");
const passes = arg("passes", "cold,cached").split(",");
const only = arg("only", null); // "tiny", "full" or "gguf": one model only
const gguf = arg("gguf", null);
const weights = arg("weights", "auto");

const routes = {
  "/": path.join(ROOT, "web/dist"),
  "/harness.html": () => fs.readFileSync(path.join(ROOT, "web/tests/harness.html")),
};
if (full) routes["/full/"] = full;
if (gguf) routes["/gguf/"] = path.dirname(path.resolve(gguf));
const server = await staticServer(routes);
const isolated = await staticServer(
  { ...routes, "/worker-harness.html": () => fs.readFileSync(path.join(ROOT, "web/tests/worker-harness.html")) },
  { isolated: true },
);
const profile = fs.mkdtempSync(path.join(os.tmpdir(), "routelmt-bench-"));
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  userDataDir: profile,
  protocolTimeout: 1_800_000,
  args: ["--no-sandbox", "--disable-dev-shm-usage", "--enable-unsafe-webgpu", "--enable-features=Vulkan", "--use-webgpu-adapter=swiftshader"],
});
const browserMemory = memorySampler(browser.process().pid);

const models = [];
if (!only || only === "tiny") models.push(["tiny-default", "/models/tiny-default/"]);
if (full && (!only || only === "full")) models.push(["qwen3-0.6b random bf16", "/full/"]);
if (gguf && (!only || only === "gguf")) models.push([path.basename(gguf), `/gguf/${path.basename(gguf)}`]);

/** One load and `iters` timed prefills in the page's model worker, threaded build. */
async function inWorker(url, iters, tokenCounts) {
  const page = await browser.newPage();
  await page.goto(`${isolated.url}/worker-harness.html`);
  await page.waitForFunction(() => window.ready === true);
  const r = await page.evaluate(
    async (url, iters, tokenCounts, weights) => {
      const client = new window.RouterClient();
      const t0 = performance.now();
      const info = (await client.call("load", { model: url, device: "cpu", weights })).result;
      const load = performance.now() - t0;
      const medians = {};
      for (const tokens of tokenCounts) {
        const ids = Array.from({ length: tokens }, (_, i) => 1000 + ((i * 7919) % 30000));
        const times = [];
        for (let i = 0; iters > 0 && i < iters + 1; i++) {
          const t = performance.now();
          await client.call("features", { records: [{ id: 0, input_ids: ids }] });
          if (i > 0) times.push(performance.now() - t);
        }
        times.sort((a, b) => a - b);
        medians[tokens] = times.length ? times[Math.floor(times.length / 2)] : null;
      }
      return { load, info, medians, isolated: self.crossOriginIsolated };
    },
    isolated.url + url, iters, tokenCounts, weights,
  );
  await page.close();
  if (!r.isolated || r.info.cpu_threads < 2) throw new Error(`cpu-threads ran with ${r.info.cpu_threads} thread(s)`);
  return r;
}

const rows = [];
for (const [name, rel] of models) {
  const url = server.url + rel;
  for (const device of devices) {
    for (const pass of passes) {
      if (device === "cpu-threads") {
        const r = await inWorker(rel, iters, tokenCounts);
        for (const tokens of tokenCounts) {
          const row = { model: name, device: `cpu, ${r.info.cpu_threads} threads`, weights: r.info.weights, pass, load_s: r.load / 1000, prefill_ms: r.medians[tokens], tokens, wasm_memory_mb: null };
          console.log(JSON.stringify(row));
          rows.push(row);
        }
        continue;
      }
      const page = await browser.newPage();
      await page.goto(`${server.url}/harness.html`);
      const r = await page.evaluate(
        async (url, device, iters, tokenCounts, weights) => {
          const wasm = await window.ready;
          const t0 = performance.now();
          const router = await window.routelmt.Router.load({ model: url, device, weights });
          const load = performance.now() - t0;
          const info = router.info();
          const medians = {};
          for (const tokens of tokenCounts) {
            const ids = Array.from({ length: tokens }, (_, i) => 1000 + ((i * 7919) % 30000));
            const times = [];
            for (let i = 0; iters > 0 && i < iters + 1; i++) {
              const t = performance.now();
              await router.features([{ id: 0, input_ids: ids }]);
              if (i > 0) times.push(performance.now() - t); // the first run compiles shaders
            }
            times.sort((a, b) => a - b);
            medians[tokens] = times.length ? times[Math.floor(times.length / 2)] : null;
          }
          const memory = window.wasmMemory().buffer.byteLength;
          router.free();
          return { load, info, medians, memory };
        },
        url, device, iters, tokenCounts, weights,
      );
      await page.close();
      for (const tokens of tokenCounts) {
        const row = {
          model: name, device: r.info.device, weights: r.info.weights, pass, load_s: r.load / 1000,
          prefill_ms: r.medians[tokens], tokens, wasm_memory_mb: r.memory / 2 ** 20, adapter: r.info.adapter,
        };
        console.log(JSON.stringify(row));
        rows.push(row);
      }
    }
  }
}
const peak = browserMemory.stop();
await browser.close();
await server.close();
await isolated.close();
fs.rmSync(profile, { recursive: true, force: true });
console.log(`\n| model | device | weights | load | load (s) | tokens | prefill (ms, median of ${iters}) | tokens/s | peak wasm memory (MiB) |`);
console.log("|---|---|---|---|---:|---:|---:|---:|---:|");
for (const r of rows) {
  const prefill = r.prefill_ms === null ? "not run" : r.prefill_ms.toFixed(1);
  const memory = r.wasm_memory_mb === null ? "-" : r.wasm_memory_mb.toFixed(0);
  const rate = r.prefill_ms === null ? "-" : ((r.tokens * 1000) / r.prefill_ms).toFixed(1);
  console.log(`| ${r.model} | ${r.device} | ${r.weights} | ${r.pass} | ${r.load_s.toFixed(2)} | ${r.tokens} | ${prefill} | ${rate} | ${memory} |`);
}
console.log(
  `\nwhole browser over the run: peak RSS ${(peak.rss / 2 ** 20).toFixed(0)} MiB, ` +
    `peak PSS ${(peak.pss / 2 ** 20).toFixed(0)} MiB`,
);
