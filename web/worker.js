// The page's model thread: every call into the wasm Router runs here, so the page stays
// responsive while the model loads and scores. Messages in: {id, op, args}; out: {id, ok,
// result | error} and {id, progress}. A request never carries an API key: the worker only routes.
//
// Threads: in a cross-origin isolated page (COOP same-origin + COEP require-corp) a CPU load
// uses the threaded build (pkg/threads: wasm atomics, shared memory, no WebGPU) with a pool of
// one Web Worker per core; WebGPU loads, and pages that are not isolated, use the
// single-threaded build. Results are identical either way: every sum runs in one fixed order.
const canThread = self.crossOriginIsolated === true && typeof SharedArrayBuffer === "function";

const packages = {};
let router = null;

/** The single-threaded package ("plain") or the threaded one, started once each. */
function pkg(kind) {
  if (!packages[kind]) packages[kind] = start(kind);
  return packages[kind];
}

async function start(kind) {
  const mod = kind === "threads" ? await import("./pkg/threads/routelmt_web.js") : await import("./pkg/routelmt_web.js");
  await mod.default();
  if (kind === "threads") await mod.initThreadPool(Math.max(1, navigator.hardwareConcurrency || 1));
  return mod;
}

/** Which package a load with `device` runs on: threads only for the CPU path. */
async function packageFor(device) {
  if (!canThread || device === "webgpu" || device === "gpu") return "plain";
  if (device === "cpu") return "threads";
  // auto: WebGPU when an adapter exists (the plain package then checks its limits).
  const adapter = navigator.gpu ? await navigator.gpu.requestAdapter().catch(() => null) : null;
  return adapter ? "plain" : "threads";
}

const ops = {
  async languages() {
    return (await pkg("plain")).languages();
  },
  async userMessage({ text, src_lang, tgt_lang }) {
    return (await pkg("plain")).userMessage(text, src_lang, tgt_lang);
  },
  async load({ model, router: routerSource, tokenizer, device, weights }, id) {
    // The previous model is freed before the next loads: two full-size models need not fit.
    if (router) router.free();
    router = null;
    const { Router } = await pkg(await packageFor(device || "auto"));
    router = await Router.load({
      model,
      router: routerSource,
      tokenizer,
      device,
      weights,
      onProgress: (p) => postMessage({ id, progress: p }),
    });
    return router.info();
  },
  async clearCache() {
    await (await pkg("plain")).clearCache();
    return true;
  },
  async info() {
    return needRouter().info();
  },
  async route({ records, options }) {
    return needRouter().route(records, options);
  },
  async score({ records }) {
    return needRouter().score(records);
  },
  async features({ records, options }) {
    return needRouter().features(records, options);
  },
};

function needRouter() {
  if (!router) throw new Error("no model loaded yet");
  return router;
}

// One operation at a time, in arrival order: a load never frees the model a route is using.
let queue = Promise.resolve();

async function handle({ id, op, args }) {
  try {
    const fn = ops[op];
    if (!fn) throw new Error(`unknown operation ${op}`);
    const t0 = performance.now();
    const result = await fn(args || {}, id);
    postMessage({ id, ok: true, result, ms: performance.now() - t0 });
  } catch (e) {
    postMessage({ id, ok: false, error: e && e.message ? e.message : String(e) });
  }
}

self.onmessage = (event) => {
  queue = queue.then(() => handle(event.data));
};
