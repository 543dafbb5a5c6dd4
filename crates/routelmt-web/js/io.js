// File access for the wasm Router: model and router files come from a base URL (fetched with
// byte progress and kept in the Cache API, so a reload makes no model-file request) or from
// File objects the user picked. Works in a window and in a worker.

const CACHE = "routelmt-files-v1";

function joinUrl(base, name) {
  return base.endsWith("/") ? base + name : base + "/" + name;
}

async function readStream(response, url, phase, onProgress) {
  const total = Number(response.headers.get("content-length")) || 0;
  if (!response.body) {
    const blob = await response.blob();
    if (onProgress) onProgress({ phase, file: url, loaded: blob.size, total: blob.size });
    return blob;
  }
  const reader = response.body.getReader();
  const chunks = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    if (onProgress) onProgress({ phase, file: url, loaded, total });
  }
  if (total && loaded !== total) {
    throw new Error(`${url}: truncated download (${loaded} of ${total} bytes)`);
  }
  return new Blob(chunks);
}

async function openCache() {
  try {
    return typeof caches !== "undefined" ? await caches.open(CACHE) : null;
  } catch (_) {
    return null; // opaque origins and some private modes have no Cache API
  }
}

async function fromUrl(base, name, phase, onProgress, optional) {
  const url = joinUrl(base, name);
  const cache = await openCache();
  const hit = cache ? await cache.match(url) : undefined;
  if (hit) {
    const blob = await hit.blob();
    if (onProgress) onProgress({ phase, file: url, loaded: blob.size, total: blob.size });
    return { blob, label: url };
  }
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new Error(`${url}: cannot fetch (${e.message}; network error or CORS)`);
  }
  if (response.status === 404 && optional) return null;
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status} ${response.statusText}`.trim());
  const blob = await readStream(response, url, phase, onProgress);
  if (cache) {
    try {
      await cache.put(url, new Response(blob, { headers: { "content-length": String(blob.size) } }));
    } catch (_) {
      // A full or unavailable cache only costs a download next time.
    }
  }
  return { blob, label: url };
}

function pickedName(file) {
  return file.webkitRelativePath || file.name;
}

async function fromFiles(files, name, phase, onProgress, optional) {
  const list = Array.from(files);
  const file = list.find((f) => f.name === name || pickedName(f).endsWith("/" + name));
  if (!file) {
    if (optional) return null;
    const names = list.map(pickedName).join(", ") || "none";
    throw new Error(`${name}: not among the picked files (${names})`);
  }
  if (onProgress) onProgress({ phase, file: name, loaded: file.size, total: file.size });
  return { blob: file, label: pickedName(file) };
}

/**
 * A handle on `name` in `source` (a base URL or a list of File objects): `{blob, label}`,
 * read in ranges with readRange, so a large file never has to fit in wasm memory at once;
 * null when optional and absent.
 */
export async function openSource(source, name, phase, onProgress, optional) {
  const progress = typeof onProgress === "function" ? onProgress : null;
  if (typeof source === "string") return fromUrl(source, name, phase, progress, optional);
  if (source && typeof source.length === "number") return fromFiles(source, name, phase, progress, optional);
  throw new Error(`${phase}: expected a base URL or a list of File objects`);
}

/** The size in bytes of an opened file. */
export function sizeOf(handle) {
  return handle.blob.size;
}

/** Bytes [start, end) of an opened file. */
export async function readRange(handle, start, end) {
  return new Uint8Array(await handle.blob.slice(start, end).arrayBuffer());
}

/** All bytes of `name` in `source`; null when optional and absent. */
export async function readSource(source, name, phase, onProgress, optional) {
  const handle = await openSource(source, name, phase, onProgress, optional);
  return handle ? new Uint8Array(await handle.blob.arrayBuffer()) : null;
}

/** A description of a source for info(): the URL, or the picked file names. */
export function describeSource(source) {
  if (typeof source === "string") return source;
  return Array.from(source || []).map(pickedName).join(", ");
}
