#!/usr/bin/env python3
"""Gateway benchmark (standard library only): requests/s and added latency of `routelmt serve`
against calling the upstream directly, at several concurrencies, with and without prefill
micro-batching. A stub OpenAI-compatible upstream (a fixed completion, no delay) runs in this
process on 127.0.0.1; each gateway is started and stopped here.

    python3 scripts/bench_gateway.py --bin target/debug/routelmt --model tests/fixtures/models/tiny-default \
        --router web/demo/router --tokenizer assets/qwen3-tokenizer/tokenizer.json --requests 400

Prints one markdown table row per (setting, concurrency): requests/s, p50 and p99 latency, and
p50/p99 minus the direct call's at the same concurrency (the gateway's added latency).
"""

import argparse
import http.client
import json
import socket
import statistics
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = json.dumps({"id": "stub", "object": "chat.completion", "choices": [
    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}]}).encode()


class Stub(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # One segment per write, no delayed-ACK stalls between headers and body.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *a):
        pass


def request_body(i):
    words = ["Guten", "Morgen", "das", "Wetter", "ist", "heute", "schön", "und", "wir", "gehen"]
    text = " ".join(words[(i + k) % len(words)] for k in range(3 + i % 8))
    msg = f"Translate the following text from German into English.\nGerman: {text}\nEnglish:"
    return json.dumps({"model": "routelmt", "messages": [{"role": "user", "content": msg}]}).encode()


def run_load(host, port, path, n, conc):
    lat, lock, nxt = [], threading.Lock(), [0]

    def worker():
        conn = http.client.HTTPConnection(host, port, timeout=120)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= n:
                conn.close()
                return
            t = time.perf_counter()
            conn.request("POST", path, request_body(i), {"content-type": "application/json"})
            r = conn.getresponse()
            r.read()
            assert r.status == 200, r.status
            with lock:
                lat.append(time.perf_counter() - t)

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - start
    lat.sort()
    return n / took, lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]


def start_gateway(a, stub_url, batch, wait_ms):
    cmd = [a.bin, "serve", "--model", a.model, "--router", a.router, "--device", "cpu",
           "--listen", "127.0.0.1:0", "--small-url", stub_url, "--small-model", "s",
           "--large-url", stub_url, "--large-model", "l", "--budget", "0.3",
           "--batch-size", str(batch), "--batch-wait-ms", str(wait_ms)]
    if a.tokenizer:
        cmd += ["--tokenizer", a.tokenizer]
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    port = None
    for line in p.stderr:
        if line.startswith("serve: listening on http://"):
            port = int(line.strip().rsplit(":", 1)[1])
        if line.startswith("serve: ready"):
            break
        if line.startswith("serve: loading failed"):
            raise SystemExit(line)
    threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
    return p, port


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--router", required=True)
    ap.add_argument("--tokenizer")
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--concurrency", default="1,8,64")
    a = ap.parse_args()
    ThreadingHTTPServer.request_queue_size = 256
    stub = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    sport = stub.server_address[1]
    stub_url = f"http://127.0.0.1:{sport}/v1"
    concs = [int(c) for c in a.concurrency.split(",")]
    direct = {c: run_load("127.0.0.1", sport, "/v1/chat/completions", a.requests, c) for c in concs}
    print(f"machine: {socket.gethostname()}, {a.requests} requests per row, model {a.model}")
    print("| setting | concurrency | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for c in concs:
        rps, p50, p99 = direct[c]
        print(f"| direct to the stub | {c} | {rps:.2f} | {p50*1e3:.2f} | {p99*1e3:.2f} | | |")
    for label, batch, wait in [("gateway, no micro-batching (batch 1)", 1, 0),
                               ("gateway, micro-batching (batch 16, 5 ms)", 16, 5)]:
        p, port = start_gateway(a, stub_url, batch, wait)
        try:
            for c in concs:
                rps, p50, p99 = run_load("127.0.0.1", port, "/v1/chat/completions", a.requests, c)
                d50, d99 = direct[c][1], direct[c][2]
                print(f"| {label} | {c} | {rps:.2f} | {p50*1e3:.2f} | {p99*1e3:.2f} | "
                      f"{(p50-d50)*1e3:.2f} | {(p99-d99)*1e3:.2f} |", flush=True)
        finally:
            p.terminate()
            p.wait()


if __name__ == "__main__":
    main()
