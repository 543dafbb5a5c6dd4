// File access for the wasm Router: model and router files come from a base URL (fetched with
// byte progress and kept in the Cache API, so a reload makes no model-file request) or from
// File objects the user picked. Works in a window and in a worker.

const CACHE = "routelmt-files-v1";

function joinUrl(base, name) {
  return base.endsWith("/") ? base + name : base + "/" + name;
}

// Downloads are stored in the Cache API as chunks of CHUNK bytes plus a small entry saying the
// file is complete, not as one response: a browser may page a large body out and fail to read it
// back, and a loader reading one tensor at a time then holds at most two chunks.
const CHUNK = 8 << 20;

function chunkKey(url, what) {
  const u = new URL(url);
  u.searchParams.set("routelmt-cache", what);
  return u.href;
}

async function openCache() {
  try {
    return typeof caches !== "undefined" ? await caches.open(CACHE) : null;
  } catch (_) {
    return null; // opaque origins and some private modes have no Cache API
  }
}

/** Streams a response into chunks (into the cache when there is one), with byte progress. */
async function download(response, url, cache, phase, onProgress) {
  // With a content encoding, content-length counts compressed bytes: no check is possible then.
  const encoding = response.headers.get("content-encoding");
  const plain = !encoding || encoding === "identity";
  const total = plain ? Number(response.headers.get("content-length")) || 0 : 0;
  const parts = [];
  let buf = new Uint8Array(CHUNK);
  let fill = 0;
  let index = 0;
  let loaded = 0;
  const flush = async () => {
    const piece = buf.slice(0, fill);
    if (cache) await cache.put(chunkKey(url, String(index)), new Response(piece));
    else parts.push(piece);
    index += 1;
    fill = 0;
  };
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    let at = 0;
    while (at < value.length) {
      const n = Math.min(CHUNK - fill, value.length - at);
      buf.set(value.subarray(at, at + n), fill);
      fill += n;
      at += n;
      if (fill === CHUNK) await flush();
    }
    loaded += value.length;
    if (onProgress) onProgress({ phase, file: url, loaded, total });
  }
  if (fill > 0 || index === 0) await flush();
  buf = null;
  if (total && loaded < total) {
    throw new Error(`${url}: truncated download (${loaded} of ${total} bytes)`);
  }
  if (cache) {
    const meta = JSON.stringify({ size: loaded, chunks: index });
    await cache.put(chunkKey(url, "complete"), new Response(meta));
  }
  return { url, label: url, size: loaded, cache, parts, memo: new Map() };
}

async function fromUrl(base, name, phase, onProgress, optional) {
  // The name "" is the URL itself (one GGUF file).
  const url = name === "" ? base : joinUrl(base, name);
  const cache = await openCache();
  const meta = cache ? await cache.match(chunkKey(url, "complete")) : undefined;
  if (meta) {
    const { size } = await meta.json();
    if (onProgress) onProgress({ phase, file: url, loaded: size, total: size });
    return { url, label: url, size, cache, parts: [], memo: new Map() };
  }
  const response = await get(url);
  // A missing optional file is 404 on most hosts, 403 on S3-style buckets.
  if ((response.status === 404 || response.status === 403) && optional) return null;
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status} ${response.statusText}`.trim());
  try {
    return await download(response, url, cache, phase, onProgress);
  } catch (e) {
    if (cache) await forget(cache, url);
    if (!cache || e.name !== "QuotaExceededError") throw e;
    // A full cache only costs a download next time: keep this one in memory.
    const again = await get(url);
    if (!again.ok) throw new Error(`${url}: HTTP ${again.status} ${again.statusText}`.trim());
    return download(again, url, null, phase, onProgress);
  }
}

/** Removes a file's cached chunks and its completion entry. */
async function forget(cache, url) {
  const prefix = chunkKey(url, "");
  for (const request of await cache.keys()) {
    if (request.url.startsWith(prefix)) await cache.delete(request);
  }
}

/** Empties the cache of downloaded model and router files. */
export async function clearCache() {
  if (typeof caches !== "undefined") await caches.delete(CACHE);
}

async function get(url) {
  try {
    return await fetch(url);
  } catch (e) {
    throw new Error(`${url}: cannot fetch (${e.message}; network error or CORS)`);
  }
}

async function chunk(handle, i) {
  if (!handle.cache) return handle.parts[i];
  let bytes = handle.memo.get(i);
  if (!bytes) {
    const hit = await handle.cache.match(chunkKey(handle.url, String(i)));
    bytes = hit ? new Uint8Array(await hit.arrayBuffer()) : null;
    const expected = Math.min(CHUNK, handle.size - i * CHUNK);
    if (!bytes || bytes.length !== expected) {
      await forget(handle.cache, handle.url);
      throw new Error(`${handle.url}: the cached copy is damaged and was removed; load again to download it`);
    }
    if (handle.memo.size >= 2) handle.memo.delete(handle.memo.keys().next().value);
    handle.memo.set(i, bytes);
  }
  return bytes;
}

function pickedName(file) {
  return file.webkitRelativePath || file.name;
}

async function fromFiles(files, name, phase, onProgress, optional) {
  const list = Array.from(files);
  // A picked folder may hold checkpoints in subfolders: the shallowest match is the folder's own.
  const depth = (f) => pickedName(f).split("/").length;
  const matches = list.filter((f) => f.name === name && (pickedName(f) === name || pickedName(f).endsWith("/" + name)));
  const file = matches.sort((a, b) => depth(a) - depth(b))[0];
  if (!file) {
    if (optional) return null;
    const names = list.map(pickedName).join(", ") || "none";
    throw new Error(`${name}: not among the picked files (${names})`);
  }
  if (onProgress) onProgress({ phase, file: name, loaded: file.size, total: file.size });
  return { blob: file, label: pickedName(file), size: file.size };
}

/** A source's File objects (a single File is a list of one), or null for a URL. */
function fileList(source) {
  if (typeof Blob !== "undefined" && source instanceof Blob) return [source];
  if (source && typeof source !== "string" && typeof source.length === "number") return Array.from(source);
  return null;
}

const isGguf = (name) => /\.gguf$/i.test(name);

/**
 * When `source` is one GGUF file, its name, else null: a URL whose path ends in `.gguf`, a
 * File named `*.gguf`, or picked files holding exactly one `.gguf` and no config.json.
 */
export function ggufName(source) {
  if (typeof source === "string") {
    const path = source.split(/[?#]/)[0];
    return isGguf(path) ? path.split("/").pop() : null;
  }
  const list = fileList(source);
  if (!list || list.some((f) => f.name === "config.json")) return null;
  const ggufs = list.filter((f) => isGguf(f.name));
  return ggufs.length === 1 ? ggufs[0].name : null;
}

/**
 * A handle on `name` in `source` (a base URL, a File or a list of File objects), read in
 * ranges with readRange, so a large file never has to fit in wasm memory at once; null when
 * optional and absent. The name "" is the source's one GGUF file (see ggufName).
 */
export async function openSource(source, name, phase, onProgress, optional) {
  const progress = typeof onProgress === "function" ? onProgress : null;
  if (typeof source === "string") return fromUrl(source, name, phase, progress, optional);
  const list = fileList(source);
  if (list) return fromFiles(list, name === "" ? ggufName(list) || "" : name, phase, progress, optional);
  throw new Error(`${phase}: expected a base URL, a File or a list of File objects`);
}

/** The size in bytes of an opened file. */
export function sizeOf(handle) {
  return handle.size;
}

/** Bytes [start, end) of an opened file. */
export async function readRange(handle, start, end) {
  if (handle.blob) return new Uint8Array(await handle.blob.slice(start, end).arrayBuffer());
  const out = new Uint8Array(end - start);
  for (let i = Math.floor(start / CHUNK); i * CHUNK < end; i++) {
    const bytes = await chunk(handle, i);
    const from = i * CHUNK;
    const a = Math.max(start, from);
    const b = Math.min(end, from + bytes.length);
    out.set(bytes.subarray(a - from, b - from), a - start);
  }
  return out;
}

/** A description of a source for info(): the URL, or the picked file names. */
export function describeSource(source) {
  if (typeof source === "string") return source;
  return (fileList(source) || []).map(pickedName).join(", ");
}
