// A promise API over the model worker (worker.js): the page's only way to the Router.
export class RouterClient {
  constructor(url = new URL("./worker.js", import.meta.url)) {
    this.worker = new Worker(url, { type: "module" });
    this.next = 1;
    this.pending = new Map();
    this.worker.onmessage = (event) => this.#receive(event.data);
    this.failed = null;
    this.worker.onerror = (event) => {
      this.failed = new Error(`model worker failed: ${event.message || "unknown error"}; reload the page`);
      for (const { reject } of this.pending.values()) reject(this.failed);
      this.pending.clear();
    };
  }

  #receive(msg) {
    const call = this.pending.get(msg.id);
    if (!call) return;
    if (msg.progress) {
      if (call.onProgress) call.onProgress(msg.progress);
      return;
    }
    this.pending.delete(msg.id);
    if (msg.ok) call.resolve({ result: msg.result, ms: msg.ms });
    else call.reject(new Error(msg.error));
  }

  call(op, args, onProgress) {
    if (this.failed) return Promise.reject(this.failed);
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress });
      this.worker.postMessage({ id, op, args });
    });
  }

  async languages() {
    return (await this.call("languages")).result;
  }
  async userMessage(text, src_lang, tgt_lang) {
    return (await this.call("userMessage", { text, src_lang, tgt_lang })).result;
  }
  async load(options, onProgress) {
    return (await this.call("load", options, onProgress)).result;
  }
  async clearCache() {
    return (await this.call("clearCache")).result;
  }
  async info() {
    return (await this.call("info")).result;
  }
  /** Routed records and the milliseconds the worker spent. */
  async route(records, options) {
    return this.call("route", { records, options });
  }
  async score(records) {
    return (await this.call("score", { records })).result;
  }
  async features(records, options) {
    return (await this.call("features", { records, options })).result;
  }
}
