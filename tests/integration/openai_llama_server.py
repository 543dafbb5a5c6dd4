"""The gateway between two real peers: the official `openai` Python SDK as the client and
llama.cpp's `llama-server` (serving the SmolLM2-135M-Instruct GGUF) as the small and the large
OpenAI-compatible upstream. Run by scripts/test_llamacpp.sh, which builds both and passes:

    python tests/integration/openai_llama_server.py ROUTELMT_BIN LLAMA_SERVER GGUF

Checks, each with its figure printed:
- buffered and streaming completions through the gateway carry the upstream's text unchanged
  (greedy decoding: the same text as asking llama-server directly), usage included, and the
  routing headers (decision, served side) reach the SDK's raw response;
- streaming through the SDK yields the same text as the buffered call;
- an SDK error (bad request) comes back as openai.BadRequestError with the gateway's message,
  and the gateway keeps serving;
- with llama-server gone, both sides fail and the SDK gets an APIStatusError 502 whose body
  names no key; with it back, 200 again;
- no key or inbound token appears in any response body, header or the gateway's log.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import openai

ROOT = Path(__file__).resolve().parents[2]
SMALL_KEY = "sk-small-secret-7f3a9c"
LARGE_KEY = "sk-large-secret-51b2e0"
TOKEN = "inbound-token-93d1c4"
PROMPT = "Translate the following text from German into English.\nGerman: Guten Morgen, wie geht es dir?\nEnglish:"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, what, proc, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.time() - t0
        except Exception:
            pass
        time.sleep(0.2)
    sys.exit(f"{what} not ready after {timeout} s")


def start_llama_server(binary, gguf, port):
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"llama-server-{port}.log", "w")
    proc = subprocess.Popen(
        [binary, "-m", gguf, "--host", "127.0.0.1", "--port", str(port), "-t", "2",
         "-c", "2048", "-np", "2", "--seed", "1"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    took = wait_http(f"http://127.0.0.1:{port}/health", "llama-server", proc)
    return proc, took


def start_gateway(binary, upstream, log_path):
    env = dict(os.environ, SMALL_KEY=SMALL_KEY, LARGE_KEY=LARGE_KEY, GATEWAY_TOKENS=TOKEN)
    args = [
        binary, "serve", "--listen", "127.0.0.1:0", "--device", "cpu",
        "--model", str(ROOT / "tests/fixtures/models/tiny-default"),
        "--router", str(ROOT / "web/demo/router"),
        "--tokenizer", str(ROOT / "assets/qwen3-tokenizer/tokenizer.json"),
        "--small-url", upstream, "--small-model", "smollm2-small", "--small-key-env", "SMALL_KEY",
        "--large-url", upstream, "--large-model", "smollm2-large", "--large-key-env", "LARGE_KEY",
        "--tokens-env", "GATEWAY_TOKENS", "--budget", "0.5", "--window", "20",
        "--timeout-ms", "20000", "--retries", "0",
    ]
    log = open(log_path, "w")
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=log)
    t0 = time.time()
    while time.time() - t0 < 60:
        text = Path(log_path).read_text()
        m = re.search(r"serve: listening on http://(\S+)", text)
        if m:
            addr = m.group(1)
            wait_http(f"http://{addr}/readyz", "routelmt serve", proc)
            return proc, addr
        if proc.poll() is not None:
            sys.exit(f"routelmt serve exited: {text}")
        time.sleep(0.1)
    sys.exit("routelmt serve did not start")


def direct(upstream):
    """llama-server asked directly (same request as the gateway forwards)."""
    c = openai.OpenAI(base_url=upstream, api_key="unused")
    kw = dict(model="x", messages=[{"role": "user", "content": PROMPT}], max_tokens=24,
              temperature=0, seed=1)
    return c.chat.completions.create(**kw).choices[0].message.content


def main():
    routelmt, llama_server, gguf = sys.argv[1:4]
    port = free_port()
    upstream = f"http://127.0.0.1:{port}/v1"
    server, took = start_llama_server(llama_server, gguf, port)
    print(f"llama-server ready in {took:.1f} s on {upstream}")
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / "routelmt-gateway-integration.log"
    gateway, addr = start_gateway(routelmt, upstream, log_path)
    client = openai.OpenAI(base_url=f"http://{addr}/v1", api_key=TOKEN, max_retries=0)
    seen = []  # every response body and header text, for the secrets sweep
    try:
        want = direct(upstream)
        assert want, "llama-server answered nothing"
        kw = dict(model="routelmt", messages=[{"role": "user", "content": PROMPT}],
                  max_tokens=24, temperature=0, seed=1)
        # Buffered, through the SDK's raw response for the routing headers.
        served = {}
        for i in range(6):
            t0 = time.time()
            raw = client.chat.completions.with_raw_response.create(**kw)
            took = time.time() - t0
            seen.append(str(dict(raw.headers)) + raw.text)
            done = raw.parse()
            assert done.choices[0].message.content == want, (done.choices[0].message.content, want)
            assert done.usage and done.usage.completion_tokens > 0, done.usage
            route, side = raw.headers["x-routelmt-route"], raw.headers["x-routelmt-served"]
            assert route == side and route in ("small", "large"), (route, side)
            assert int(raw.headers["x-routelmt-decision"]) == i + 1
            served[side] = served.get(side, 0) + 1
            print(f"buffered {i}: {took * 1e3:.0f} ms, route {route}, "
                  f"{done.usage.completion_tokens} tokens: {done.choices[0].message.content!r}")
        # Streaming: the chunks add up to the same text.
        for i in range(3):
            t0 = time.time()
            first = None
            pieces = []
            with client.chat.completions.with_streaming_response.create(stream=True, **kw) as r:
                assert r.headers["content-type"].startswith("text/event-stream")
                seen.append(str(dict(r.headers)))
                for chunk in r.parse():
                    if chunk.choices and chunk.choices[0].delta.content:
                        first = first or time.time() - t0
                        pieces.append(chunk.choices[0].delta.content)
            text = "".join(pieces)
            seen.append(text)
            assert text == want, (text, want)
            print(f"stream {i}: first token {first * 1e3:.0f} ms, {len(pieces)} chunks, "
                  f"all {1e3 * (time.time() - t0):.0f} ms")
        # A bad request: the SDK raises BadRequestError with the gateway's message.
        try:
            client.chat.completions.create(model="routelmt", messages=[])
            sys.exit("an empty messages list was accepted")
        except openai.BadRequestError as e:
            seen.append(str(e.body))
            print(f"bad request: 400 {e.body['message'] if isinstance(e.body, dict) else e.body}")
        # A wrong token: 401 from the gateway, no upstream call.
        bad = openai.OpenAI(base_url=f"http://{addr}/v1", api_key="wrong", max_retries=0)
        try:
            bad.chat.completions.create(**kw)
            sys.exit("a wrong token was accepted")
        except openai.AuthenticationError as e:
            seen.append(str(e.body))
            print("wrong token: 401")
        # llama-server gone: both sides fail, the SDK gets 502; back: 200.
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        try:
            client.chat.completions.create(**kw)
            sys.exit("answered with no upstream")
        except openai.APIStatusError as e:
            seen.append(str(e.body))
            assert e.status_code == 502, e.status_code
            print(f"upstream down: {e.status_code} {e.body}")
        server, took = start_llama_server(llama_server, gguf, port)
        # The sides cool down after failures; the gateway answers again once one is tried.
        t0 = time.time()
        while True:
            try:
                done = client.chat.completions.create(**kw)
                break
            except openai.APIStatusError as e:
                seen.append(str(e.body))
                assert time.time() - t0 < 30, "not answering 30 s after the upstream came back"
                time.sleep(0.5)
        assert done.choices[0].message.content == want
        print(f"upstream back: 200 after {time.time() - t0:.1f} s")
        print(f"served: {json.dumps(served)}")
    finally:
        gateway.send_signal(signal.SIGTERM)
        try:
            gateway.wait(timeout=40)
        except subprocess.TimeoutExpired:
            gateway.kill()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    assert gateway.returncode == 0, gateway.returncode
    log = Path(log_path).read_text()
    everything = "\n".join(seen) + log
    for secret in (SMALL_KEY, LARGE_KEY, TOKEN):
        assert secret not in everything, f"a secret leaked: {secret[:6]}…"
    print(f"secrets: none of 3 in {len(seen)} responses or {len(log.splitlines())} log lines")
    print("openai SDK + llama-server integration: ok")


if __name__ == "__main__":
    main()
