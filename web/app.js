// The RouteLMT page: load a model and router in the worker, route requests under a budget,
// then send each to its side's OpenAI-compatible endpoint. API keys are read from their
// inputs at call time and held nowhere else: never logged, stored, or put in a URL.
import { RouterClient } from "./client.js";

const $ = (id) => document.getElementById(id);
const client = new RouterClient();
let loadedInfo = null;
let rows = []; // {record, route, score, ms, message, status, translation, error}

function showError(message) {
  const el = $("error");
  el.textContent = message || "";
  el.hidden = !message;
}

function setStatus(id, text) {
  $(id).textContent = text;
}

async function fillLanguages() {
  const langs = await client.languages();
  for (const [select, initial] of [[$("src-lang"), "en"], [$("tgt-lang"), "zh"]]) {
    for (const { code, name } of langs) {
      const opt = document.createElement("option");
      opt.value = code;
      opt.textContent = `${name} (${code})`;
      select.append(opt);
    }
    select.value = initial;
  }
}

function source(urlInput, filesInput) {
  const picked = Array.from(filesInput.files || []);
  if (picked.length) return picked;
  const url = urlInput.value.trim();
  return url ? new URL(url, location.href).href : undefined;
}

/** Disables the buttons that would race the model work in progress. */
function busy(on) {
  for (const id of ["load", "route", "clear-cache"]) $(id).disabled = on;
  if (!on) $("route").disabled = !loadedInfo;
}

async function load() {
  showError("");
  const bar = $("load-progress");
  bar.hidden = false;
  bar.value = 0;
  busy(true);
  setStatus("load-status", "loading…");
  try {
    const options = {
      model: $("model-gguf").files.length ? $("model-gguf").files[0] : source($("model-url"), $("model-files")),
      router: source($("router-url"), $("router-files")),
      device: $("device").value,
      weights: $("weights").value,
    };
    loadedInfo = null; // the worker frees the previous model first
    loadedInfo = await client.load(options, (p) => {
      bar.max = p.total || 1;
      bar.value = p.total ? p.loaded : 1;
      const what = p.phase === "load" ? "tensors" : p.file.split("/").pop();
      const amount = p.phase === "load" ? `${p.loaded}/${p.total}` : `${(p.loaded / 1e6).toFixed(1)} MB`;
      setStatus("load-status", `${p.phase}: ${what} ${amount}`);
    });
    $("info").textContent = JSON.stringify(loadedInfo, null, 2);
    const m = loadedInfo.model;
    const r = loadedInfo.router;
    $("info-summary").textContent =
      `${m.architecture}, ${m.layers} layers, hidden ${m.hidden_size}, ${(m.vocab_size / 1000).toFixed(0)}k vocab` +
      (r ? `; ${r.head} router, layer ${r.layer}${r.threshold ? `, τ ${Number(r.threshold.threshold).toFixed(4)}` : ""}` : "; no router") +
      ` — ${loadedInfo.device}${loadedInfo.adapter ? ` (${loadedInfo.adapter})` : ""}` +
      `; ${m.format} file, weights ${loadedInfo.weights}, embedding ${loadedInfo.embedding_dtype}` +
      (loadedInfo.weight_bytes ? `, ${((loadedInfo.weight_bytes + loadedInfo.embedding_bytes) / 1e6).toFixed(1)} MB in memory` : "") +
      (loadedInfo.wasm_memory_bytes ? `, wasm memory ${(loadedInfo.wasm_memory_bytes / 1e6).toFixed(0)} MB` : "");
    $("info-box").hidden = false;
    setStatus("load-status", `loaded on ${loadedInfo.device} (${loadedInfo.reason})`);
    $("use-tau").disabled = !(loadedInfo.router && loadedInfo.router.threshold);
  } catch (e) {
    $("info-box").hidden = true;
    setStatus("load-status", "not loaded");
    showError(e.message);
  } finally {
    bar.hidden = true;
    busy(false);
  }
}

async function clearCache() {
  await client.clearCache();
  setStatus("load-status", "download cache cleared");
}

async function requests() {
  const src_lang = $("src-lang").value;
  const tgt_lang = $("tgt-lang").value;
  const file = $("jsonl").files[0];
  if (file) {
    const lines = (await file.text()).split(/\r?\n/);
    const out = [];
    lines.forEach((line, i) => {
      if (!line.trim()) return;
      let rec;
      try {
        rec = JSON.parse(line);
      } catch (e) {
        throw new Error(`${file.name}:${i + 1}: invalid JSON: ${e.message}`);
      }
      out.push({ src_lang, tgt_lang, ...rec, id: rec.id ?? out.length + 1 });
    });
    return out;
  }
  return $("requests").value.split(/\r?\n/).filter((l) => l.trim()).map((src, i) => ({ id: i + 1, src, src_lang, tgt_lang }));
}

async function route() {
  showError("");
  busy(true);
  setStatus("route-status", "routing…");
  try {
    const records = await requests();
    if (!records.length) throw new Error("no requests: type one per line or pick a JSONL file");
    const options = $("use-tau").checked ? {} : { budget: Number($("budget").value) / 100 };
    const { result, ms } = await client.route(records, options);
    rows = [];
    for (const r of result) {
      rows.push({ record: r, route: r.route, score: r.score, ms: ms / result.length, status: "routed" });
    }
    render();
    setStatus("route-status", `${result.length} routed in ${ms.toFixed(0)} ms on ${loadedInfo.device}`);
    $("translate").disabled = false;
  } catch (e) {
    showError(e.message);
    setStatus("route-status", "");
  } finally {
    busy(false);
  }
}

function endpoint(side) {
  return {
    url: $(`${side}-url`).value.trim().replace(/\/+$/, ""),
    model: $(`${side}-model`).value.trim(),
    keyInput: $(`${side}-key`),
  };
}

async function translateOne(row) {
  const ep = endpoint(row.route);
  if (!ep.url) throw new Error(`no base URL for the ${row.route} model`);
  const r = row.record;
  const content = r.src !== undefined ? await client.userMessage(r.src, r.src_lang, r.tgt_lang) : String(r.prompt ?? "");
  const headers = { "content-type": "application/json" };
  const key = ep.keyInput.value;
  if (key) {
    const host = new URL(ep.url, location.href);
    const local = ["127.0.0.1", "localhost", "[::1]"].includes(host.hostname);
    if (host.protocol === "http:" && !local) {
      throw new Error(`${row.route}: refusing to send an API key over plain http to ${host.host}; use https`);
    }
    headers.authorization = `Bearer ${key}`;
  }
  const timeout = Number($("timeout").value) * 1000;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeout);
  let response;
  try {
    response = await fetch(`${ep.url}/chat/completions`, {
      method: "POST",
      headers,
      body: JSON.stringify({ model: ep.model, messages: [{ role: "user", content }], temperature: 0 }),
      signal: abort.signal,
    });
  } catch (e) {
    if (abort.signal.aborted) throw new Error(`${row.route}: timed out after ${timeout / 1000} s`);
    throw new Error(`${row.route}: cannot reach ${ep.url} (network error or CORS)`);
  } finally {
    clearTimeout(timer);
  }
  const text = await response.text();
  if (!response.ok) {
    let detail = text.slice(0, 200);
    try {
      detail = JSON.parse(text).error?.message ?? detail;
    } catch (_) {}
    throw new Error(`${row.route}: HTTP ${response.status}: ${detail}`);
  }
  const body = JSON.parse(text);
  return body.choices?.[0]?.message?.content ?? "";
}

async function translateRow(row) {
  row.status = "sending";
  row.error = null;
  render();
  try {
    row.translation = await translateOne(row);
    row.status = "done";
  } catch (e) {
    row.status = "failed";
    row.error = e.message;
  }
  if (!rows.some((r) => r.status === "failed")) showError("");
  render();
}

/** At most this many calls in flight: browsers queue more per host, and their timers would run. */
const IN_FLIGHT = 6;

async function translateAll() {
  showError("");
  $("translate").disabled = true;
  const todo = rows.filter((r) => r.status !== "done");
  const lane = async () => {
    while (todo.length) await translateRow(todo.shift());
  };
  await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, todo.length) }, lane));
  $("translate").disabled = false;
  const failed = rows.filter((r) => r.status === "failed").length;
  if (failed) showError(`${failed} request(s) failed; each keeps its Retry button`);
}

function render() {
  const body = $("results").tBodies[0];
  body.replaceChildren();
  rows.forEach((row) => {
    const tr = document.createElement("tr");
    tr.className = `route-${row.route} status-${row.status}`;
    const cells = [
      row.record.id,
      row.record.src ?? "(token ids)",
      row.score.toFixed(4),
      row.route,
      loadedInfo ? loadedInfo.device : "",
      row.ms.toFixed(1),
    ];
    for (const c of cells) {
      const td = document.createElement("td");
      td.textContent = String(c);
      tr.append(td);
    }
    const out = document.createElement("td");
    if (row.status === "failed") {
      out.textContent = row.error + " ";
      const retry = document.createElement("button");
      retry.textContent = "Retry";
      retry.className = "retry";
      retry.onclick = () => translateRow(row);
      out.append(retry);
    } else {
      out.textContent = row.translation ?? (row.status === "sending" ? "…" : "");
    }
    tr.append(out);
    body.append(tr);
  });
  const large = rows.filter((r) => r.route === "large").length;
  const sent = rows.filter((r) => r.status === "done");
  const budget = $("use-tau").checked ? "router τ" : `${$("budget").value}%`;
  setStatus(
    "share",
    rows.length
      ? `large: ${large} of ${rows.length} (${((100 * large) / rows.length).toFixed(1)}%, budget ${budget}); translated ${sent.length}`
      : "",
  );
}

$("budget").oninput = () => setStatus("budget-value", `${$("budget").value}%`);
$("load").onclick = load;
$("clear-cache").onclick = () => clearCache().catch((e) => showError(e.message));
$("route").onclick = route;
$("translate").onclick = translateAll;
fillLanguages().catch((e) => showError(e.message));
