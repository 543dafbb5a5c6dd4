// The page's model thread: every call into the wasm Router runs here, so the page stays
// responsive while the model loads and scores. Messages in: {id, op, args}; out: {id, ok,
// result | error} and {id, progress}. A request never carries an API key: the worker only routes.
import init, { Router, clearCache, languages, userMessage } from "./pkg/routelmt_web.js";

let ready = null;
let router = null;

function started() {
  if (!ready) ready = init();
  return ready;
}

const ops = {
  async languages() {
    return languages();
  },
  async userMessage({ text, src_lang, tgt_lang }) {
    return userMessage(text, src_lang, tgt_lang);
  },
  async load({ model, router: routerSource, tokenizer, device }, id) {
    // The previous model is freed before the next loads: two full-size models need not fit.
    if (router) router.free();
    router = null;
    router = await Router.load({
      model,
      router: routerSource,
      tokenizer,
      device,
      onProgress: (p) => postMessage({ id, progress: p }),
    });
    return router.info();
  },
  async clearCache() {
    await clearCache();
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
    await started();
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
