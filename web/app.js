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

async function load() {
  showError("");
  const bar = $("load-progress");
  bar.hidden = false;
  bar.value = 0;
  $("load").disabled = true;
  setStatus("load-status", "loading…");
  const options = {
    model: source($("model-url"), $("model-files")),
    router: source($("router-url"), $("router-files")),
    device: $("device").value,
  };
  try {
    loadedInfo = await client.load(options, (p) => {
      bar.max = p.total || 1;
      bar.value = p.total ? p.loaded : 1;
      setStatus("load-status", `${p.phase}: ${p.file.split("/").pop()} ${(p.loaded / 1e6).toFixed(1)} MB`);
    });
    $("info").textContent = JSON.stringify(loadedInfo, null, 2);
    const m = loadedInfo.model;
    const r = loadedInfo.router;
    $("info-summary").textContent =
      `${m.architecture}, ${m.layers} layers, hidden ${m.hidden_size}, ${(m.vocab_size / 1000).toFixed(0)}k vocab` +
      (r ? `; ${r.head} router, layer ${r.layer}${r.threshold ? `, τ ${Number(r.threshold.threshold).toFixed(4)}` : ""}` : "; no router") +
      ` — ${loadedInfo.device}${loadedInfo.adapter ? ` (${loadedInfo.adapter})` : ""}`;
    $("info-box").hidden = false;
    setStatus("load-status", `loaded on ${loadedInfo.device} (${loadedInfo.reason})`);
    $("route").disabled = false;
    $("use-tau").disabled = !(loadedInfo.router && loadedInfo.router.threshold);
  } catch (e) {
    setStatus("load-status", "not loaded");
    showError(e.message);
  } finally {
    bar.hidden = true;
    $("load").disabled = false;
  }
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
  $("route").disabled = true;
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
    $("route").disabled = false;
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
  if (key) headers.authorization = `Bearer ${key}`;
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

async function translateAll() {
  showError("");
  $("translate").disabled = true;
  await Promise.all(rows.filter((r) => r.status !== "done").map(translateRow));
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
$("route").onclick = route;
$("translate").onclick = translateAll;
fillLanguages().catch((e) => showError(e.message));
