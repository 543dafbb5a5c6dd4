//! Test-side HTTP: stub OpenAI-compatible upstreams that succeed, fail with 500, hang, reset
//! or answer slowly on demand (and count what they receive), a minimal HTTP/1.1 client, and a
//! gateway process started and stopped by the tests. Everything listens on 127.0.0.1.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a stub does with the next requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// 200 with a completion (or an SSE stream when the request asks for one).
    Ok,
    /// 500.
    Fail,
    /// Never answers (until the client goes away).
    Hang,
    /// Closes the connection without answering.
    Reset,
    /// Answers after this many milliseconds.
    Slow(u64),
    /// 429 with `Retry-After` of this many seconds.
    RateLimited(u64),
    /// 401 with a body that echoes part of the key, as providers do.
    Unauthorized,
    /// A stream's headers and first event, then nothing (until the client goes away).
    StallStream,
    /// Every n-th request received fails as [`Mode::Fail`]; the others as [`Mode::Ok`].
    FailEvery(usize),
}

/// The part of a key a stub's 401 body echoes.
pub const ECHOED_KEY: &str = "sk-proj-abc123...XYZ9";

/// Upstream keys that every gateway started by [`Gateway::start`] holds (through
/// `ROUTELMT_SMALL_KEY_ENV` / `ROUTELMT_LARGE_KEY_ENV`, which a test's own flags override). No
/// response any test reads through [`request`] and no gateway log may contain them or
/// [`ECHOED_KEY`]: the secrets sweep across every gateway test, faults included.
pub const SMALL_SECRET: &str = "sk-sweep-small-4c1d9e";
/// See [`SMALL_SECRET`].
pub const LARGE_SECRET: &str = "sk-sweep-large-8a72f0";

/// Responses checked by the sweep so far (in this test binary).
static SWEPT: AtomicUsize = AtomicUsize::new(0);

/// Panics if `text` (a response or a log) holds a secret.
fn sweep(what: &str, text: &str) {
    for secret in [SMALL_SECRET, LARGE_SECRET, ECHOED_KEY] {
        assert!(!text.contains(secret), "{what} holds a secret ({}…)", &secret[..8]);
    }
}

/// The SSE bytes a stub streams.
pub fn sse_body(name: &str) -> String {
    let mut s = String::new();
    for (i, piece) in ["Hal", "lo ", name].iter().enumerate() {
        s.push_str(&format!(
            "data: {{\"id\":\"{name}-{i}\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{piece}\"}}}}]}}\n\n"
        ));
    }
    s.push_str("data: [DONE]\n\n");
    s
}

/// A stub upstream (clones share it).
#[derive(Clone)]
pub struct Stub {
    /// Its address.
    pub addr: SocketAddr,
    /// Requests received (answered or not).
    pub count: Arc<AtomicUsize>,
    /// Connections the client closed while the stub was hanging.
    pub cancelled: Arc<AtomicUsize>,
    /// Authorization headers received.
    pub auth: Arc<Mutex<Vec<String>>>,
    /// Bodies received.
    pub bodies: Arc<Mutex<Vec<String>>>,
    mode: Arc<Mutex<Mode>>,
}

impl Stub {
    /// Starts a stub named `name` (it answers with its name) in `mode`.
    pub fn start(name: &'static str, mode: Mode) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stub = Stub {
            addr,
            count: Arc::default(),
            cancelled: Arc::default(),
            auth: Arc::default(),
            bodies: Arc::default(),
            mode: Arc::new(Mutex::new(mode)),
        };
        let (count, cancelled, auth, bodies, mode) = (
            stub.count.clone(),
            stub.cancelled.clone(),
            stub.auth.clone(),
            stub.bodies.clone(),
            stub.mode.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (count, cancelled, auth, bodies, mode) =
                    (count.clone(), cancelled.clone(), auth.clone(), bodies.clone(), mode.clone());
                std::thread::spawn(move || {
                    serve_one(conn, name, &count, &cancelled, &auth, &bodies, &mode);
                });
            }
        });
        stub
    }

    /// Base URL as OpenAI clients take it.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Changes what the stub does.
    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Requests received so far.
    pub fn n(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

fn serve_one(
    mut conn: TcpStream,
    name: &str,
    count: &AtomicUsize,
    cancelled: &AtomicUsize,
    auth: &Mutex<Vec<String>>,
    bodies: &Mutex<Vec<String>>,
    mode: &Mutex<Mode>,
) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    loop {
        let Some((head, body)) = read_message(&mut reader) else { return };
        let k = count.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(a) = head.get("authorization") {
            auth.lock().unwrap().push(a.clone());
        }
        let body = String::from_utf8_lossy(&body).to_string();
        bodies.lock().unwrap().push(body.clone());
        let m = match *mode.lock().unwrap() {
            Mode::FailEvery(n) if k.is_multiple_of(n.max(1)) => Mode::Fail,
            Mode::FailEvery(_) => Mode::Ok,
            m => m,
        };
        match m {
            Mode::Reset => return,
            Mode::Fail => {
                let b = "{\"error\":{\"message\":\"stub failure\"}}";
                let _ = write!(
                    conn,
                    "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{b}",
                    b.len()
                );
            }
            Mode::RateLimited(secs) => {
                let b = "{\"error\":{\"message\":\"Rate limit reached\",\"type\":\"requests\"}}";
                let _ = write!(
                    conn,
                    "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nretry-after: {secs}\r\ncontent-length: {}\r\n\r\n{b}",
                    b.len()
                );
            }
            Mode::Unauthorized => {
                let b = format!(
                    "{{\"error\":{{\"message\":\"Incorrect API key provided: {ECHOED_KEY}\",\"code\":\"invalid_api_key\"}}}}"
                );
                let _ = write!(
                    conn,
                    "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{b}",
                    b.len()
                );
            }
            Mode::StallStream => {
                let first = sse_body(name).split("\n\n").next().unwrap().to_string() + "\n\n";
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n{first}"
                );
                let _ = conn.flush();
                let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                let mut buf = [0u8; 64];
                if matches!(conn.read(&mut buf), Ok(0)) {
                    cancelled.fetch_add(1, Ordering::SeqCst);
                }
                return;
            }
            Mode::Hang => {
                // Wait for the client to go away (read returns 0), at most 30 s.
                let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                let mut buf = [0u8; 64];
                if matches!(conn.read(&mut buf), Ok(0)) {
                    cancelled.fetch_add(1, Ordering::SeqCst);
                }
                return;
            }
            Mode::Ok | Mode::Slow(_) | Mode::FailEvery(_) => {
                if let Mode::Slow(ms) = m {
                    std::thread::sleep(Duration::from_millis(ms));
                }
                if body.contains("\"stream\":true") {
                    let b = sse_body(name);
                    let _ = write!(
                        conn,
                        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n{b}"
                    );
                    return;
                }
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                let b =
                    serde_json::json!({"id": format!("stub-{name}"), "object": "chat.completion",
                    "model": v["model"], "choices": [{"index": 0, "finish_reason": "stop",
                    "message": {"role": "assistant", "content": name}}]})
                    .to_string();
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{b}",
                    b.len()
                );
            }
        }
    }
}

/// Reads one HTTP/1.1 message (head with lower-cased header names, body by content-length or
/// chunked); `None` at end of stream.
fn read_message(r: &mut impl BufRead) -> Option<(BTreeMap<String, String>, Vec<u8>)> {
    let mut head = BTreeMap::new();
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    head.insert(":start".to_string(), line.trim_end().to_string());
    loop {
        line.clear();
        r.read_line(&mut line).ok()?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            head.insert(k.trim().to_lowercase(), v.trim().to_string());
        }
    }
    let mut body = Vec::new();
    if head.get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            line.clear();
            r.read_line(&mut line).ok()?;
            let n = usize::from_str_radix(line.trim(), 16).ok()?;
            let mut chunk = vec![0u8; n + 2];
            r.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = head.get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(n, 0);
        r.read_exact(&mut body).ok()?;
    } else if !head[":start"].starts_with("POST") && !head[":start"].starts_with("GET") {
        r.read_to_end(&mut body).ok()?;
    }
    Some((head, body))
}

/// A response as the test client saw it.
#[derive(Debug)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Headers (lower-cased names).
    pub headers: BTreeMap<String, String>,
    /// Body (de-chunked).
    pub body: Vec<u8>,
}

impl Resp {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    /// A header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// One request on a fresh connection.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(body).unwrap();
    let mut reader = BufReader::new(conn);
    let (h, body) = read_message(&mut reader).expect("a response");
    let status = h[":start"].split_whitespace().nth(1).unwrap().parse().unwrap();
    let all: Vec<&str> = h.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]).collect();
    sweep(&format!("the response to {method} {path}"), &all.join("\n"));
    sweep(&format!("the response to {method} {path}"), &String::from_utf8_lossy(&body));
    SWEPT.fetch_add(1, Ordering::Relaxed);
    Resp { status, headers: h, body }
}

/// `POST /v1/chat/completions` with a JSON body.
pub fn chat(addr: SocketAddr, body: &serde_json::Value, headers: &[(&str, &str)]) -> Resp {
    let mut h = vec![("content-type", "application/json")];
    h.extend_from_slice(headers);
    request(addr, "POST", "/v1/chat/completions", &h, body.to_string().as_bytes())
}

/// A running `routelmt serve`.
pub struct Gateway {
    /// The process.
    pub child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its stderr so far (read by a thread).
    pub log: Arc<Mutex<String>>,
}

impl Gateway {
    /// Starts `routelmt serve ARGS --listen 127.0.0.1:0` with extra environment `env`, and
    /// waits until it is ready.
    pub fn start(args: &[String], env: &[(&str, &str)]) -> Gateway {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_routelmt"));
        cmd.arg("serve").args(args).args(["--listen", "127.0.0.1:0"]);
        cmd.env("ROUTELMT_SMALL_KEY_ENV", "RLT_SWEEP_SMALL").env("RLT_SWEEP_SMALL", SMALL_SECRET);
        cmd.env("ROUTELMT_LARGE_KEY_ENV", "RLT_SWEEP_LARGE").env("RLT_SWEEP_LARGE", LARGE_SECRET);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(a) = line.strip_prefix("serve: listening on http://") {
                    let _ = tx.send(a.parse::<SocketAddr>().unwrap());
                }
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("gateway did not start: {}", log.lock().unwrap()));
        let g = Gateway { child, addr, log };
        let started = Instant::now();
        while request(g.addr, "GET", "/readyz", &[], b"").status != 200 {
            assert!(started.elapsed() < Duration::from_secs(120), "not ready: {}", g.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        g
    }

    /// Its stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends SIGTERM.
    pub fn term(&self) {
        let ok =
            Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success());
    }

    /// SIGTERM, then the exit code.
    pub fn stop(mut self) -> Option<i32> {
        self.term();
        let started = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            assert!(started.elapsed() < Duration::from_secs(30), "gateway did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let log = self.log();
            sweep("the gateway's log", &log);
            println!(
                "secrets sweep: no key in {} responses so far nor in this gateway's {} log lines",
                SWEPT.load(Ordering::Relaxed),
                log.lines().count()
            );
        }
    }
}

/// The value of a Prometheus sample (`name{labels}`), 0 when absent.
pub fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|v| v.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}
