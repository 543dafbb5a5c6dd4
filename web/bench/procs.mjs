// Memory of a browser's whole process tree, read from /proc (Linux), for the browser benchmarks
// (web/bench/bench.mjs and web/bench/wllama.mjs): the summed RSS every 200 ms and the summed PSS
// every 2 s, peaks in bytes.
import fs from "node:fs";

/** Pids of `root` and all its descendants, from /proc. */
export function processTree(root) {
  const children = new Map();
  for (const pid of fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid).push(Number(pid));
    } catch {} // the process is gone
  }
  const tree = [];
  const stack = [root];
  while (stack.length) {
    const pid = stack.pop();
    tree.push(pid);
    stack.push(...(children.get(pid) || []));
  }
  return tree;
}

/**
 * Samples the summed RSS of the process tree of `root` every 200 ms, and its summed PSS every 2 s
 * (smaps_rollup costs ~10 ms of CPU per read of the renderer); peaks in bytes.
 */
export function memorySampler(root) {
  const peak = { rss: 0, pss: 0 };
  let n = 0;
  const sample = (withPss) => {
    let rss = 0;
    let pss = 0;
    for (const pid of processTree(root)) {
      try {
        rss += Number(fs.readFileSync(`/proc/${pid}/statm`, "utf8").split(" ")[1]) * 4096;
        const m = withPss && /^Pss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"));
        if (m) pss += Number(m[1]) * 1024;
      } catch {} // the process is gone
    }
    peak.rss = Math.max(peak.rss, rss);
    peak.pss = Math.max(peak.pss, pss);
  };
  sample(true);
  const timer = setInterval(() => sample(++n % 10 === 0), 200);
  let stopped = false;
  const stop = () => {
    if (!stopped) {
      clearInterval(timer);
      sample(true);
      stopped = true;
    }
    return peak;
  };
  return { stop };
}
