//! `routelmt serve` end to end: the real binary in front of stub upstreams (tests/e2e/http.rs),
//! on the bundled tiny model and demo router. Budget under concurrent load, stream
//! pass-through, fallbacks under each fault, bad input, keys and tokens, SIGTERM draining, and
//! two replicas sharing one budget through a real redis-server.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{fixture, root};
use crate::http::{ECHOED_KEY, Gateway, Mode, Stub, chat, metric, request, sse_body};

/// Flags for a gateway on the tiny model and demo router in front of `small` and `large`.
fn base_args(small: &Stub, large: &Stub) -> Vec<String> {
    let tok = root().join("assets/qwen3-tokenizer/tokenizer.json");
    [
        "--model",
        fixture("models/tiny-default").to_str().unwrap(),
        "--router",
        root().join("web/demo/router").to_str().unwrap(),
        "--tokenizer",
        tok.to_str().unwrap(),
        "--device",
        "cpu",
        "--small-url",
        &small.url(),
        "--small-model",
        "lmt-small",
        "--large-url",
        &large.url(),
        "--large-model",
        "lmt-large",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn with(mut args: Vec<String>, extra: &[&str]) -> Vec<String> {
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

const WORDS: [&str; 12] = [
    "Guten", "Morgen", "das", "Wetter", "ist", "heute", "schön", "und", "wir", "gehen", "in",
    "Park",
];

/// A translation request whose text varies with `i` (so the scores vary).
fn body(i: usize) -> Value {
    let n = 1 + (i * 7919) % 11;
    let text: Vec<&str> = (0..n).map(|k| WORDS[(i + k * 5) % WORDS.len()]).collect();
    let msg = format!(
        "Translate the following text from German into English.\nGerman: {}\nEnglish:",
        text.join(" ")
    );
    json!({"model": "routelmt", "messages": [{"role": "user", "content": msg}]})
}

/// Sends `n` requests over `threads` threads; returns (decision seq, route, served, status).
fn load(addr: SocketAddr, n: usize, threads: usize) -> Vec<(u64, String, String, u16)> {
    let next = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let next = next.clone();
            std::thread::spawn(move || {
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= n {
                        return out;
                    }
                    let r = chat(addr, &body(i), &[]);
                    let seq = r.header("x-routelmt-decision").map_or(0, |s| s.parse().unwrap());
                    let route = r.header("x-routelmt-route").unwrap_or("").to_string();
                    let served = r.header("x-routelmt-served").unwrap_or("").to_string();
                    out.push((seq, route, served, r.status));
                }
            })
        })
        .collect();
    handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
}

/// Checks that every window of `w` consecutive decisions routes within `p ± 0.02`.
fn assert_windows(mut decisions: Vec<(u64, bool)>, w: usize, p: f64) {
    decisions.sort();
    let seqs: Vec<u64> = decisions.iter().map(|d| d.0).collect();
    assert!(seqs.windows(2).all(|s| s[1] == s[0] + 1), "decision numbers are consecutive");
    let large: Vec<bool> = decisions.iter().map(|d| d.1).collect();
    let (lo, hi) = (
        ((p - 0.02) * w as f64 - 1e-9).ceil() as usize,
        ((p + 0.02) * w as f64 + 1e-9).floor() as usize,
    );
    for (k, win) in large.windows(w).enumerate() {
        let c = win.iter().filter(|&&l| l).count();
        assert!((lo..=hi).contains(&c), "window {k}: {c} large, want {lo}..={hi}");
    }
}

#[test]
fn budget_holds_under_concurrent_load_and_metrics_match_the_upstreams() {
    let (small, large) = (Stub::start("small", Mode::Ok), Stub::start("large", Mode::Ok));
    let args = with(
        base_args(&small, &large),
        &["--budget", "0.3", "--window", "200", "--batch-size", "16"],
    );
    let g = Gateway::start(&args, &[]);
    let started = Instant::now();
    let results = load(g.addr, 2000, 32);
    let took = started.elapsed();
    assert_eq!(results.len(), 2000);
    assert!(results.iter().all(|r| r.3 == 200), "every request answered 200");
    assert!(results.iter().all(|r| r.1 == r.2), "no fallback without faults");
    assert_windows(results.iter().map(|r| (r.0, r.1 == "large")).collect(), 200, 0.3);
    let m = String::from_utf8(request(g.addr, "GET", "/metrics", &[], b"").body).unwrap();
    let served_small = metric(&m, "routelmt_requests_total{route=\"small\",status=\"200\"}");
    let served_large = metric(&m, "routelmt_requests_total{route=\"large\",status=\"200\"}");
    assert_eq!((served_small as usize, served_large as usize), (small.n(), large.n()), "{m}");
    assert_eq!(
        metric(&m, "routelmt_upstream_requests_total{upstream=\"large\",outcome=\"200\"}") as usize,
        large.n()
    );
    assert_eq!(metric(&m, "routelmt_budget"), 0.3);
    assert!(metric(&m, "routelmt_prefill_rows_total") as usize == 2000);
    println!("2000 requests at concurrency 32 in {took:.2?}; large {}", large.n());
    assert_eq!(g.stop(), Some(0));
}

/// Large counts of every window of `w` consecutive requests, in decision order, of the side
/// that served them.
fn served_windows(results: &[(u64, String, String, u16)], w: usize) -> Vec<usize> {
    let mut served: Vec<(u64, bool)> = results.iter().map(|r| (r.0, r.2 == "large")).collect();
    served.sort();
    let large: Vec<bool> = served.iter().map(|s| s.1).collect();
    large.windows(w).map(|win| win.iter().filter(|&&l| l).count()).collect()
}

#[test]
fn the_budget_counts_what_was_served_when_the_small_side_fails_over() {
    // Every fifth small call fails (no retry) and is served large. Counting decisions, the
    // large side would serve 0.3 + 0.2 × 0.7 = 44%; counting what was served, the budget holds
    // on average (the band on decisions cannot absorb every burst of fallbacks: printed).
    let (small, large) = (Stub::start("small", Mode::FailEvery(5)), Stub::start("large", Mode::Ok));
    let args = with(
        base_args(&small, &large),
        &["--budget", "0.3", "--window", "100", "--retries", "0", "--batch-size", "4"],
    );
    let g = Gateway::start(&args, &[]);
    let results = load(g.addr, 800, 2);
    assert!(results.iter().all(|r| r.3 == 200), "every request answered");
    let fallbacks = results.iter().filter(|r| r.1 == "small" && r.2 == "large").count();
    let served_large = results.iter().filter(|r| r.2 == "large").count();
    let counts = served_windows(&results, 100);
    let inside = counts.iter().filter(|&&c| (28..=32).contains(&c)).count();
    let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
    println!(
        "800 requests at concurrency 2, {fallbacks} small→large fallbacks: {served_large} served \
         large; {inside} of {} windows of 100 in 28..=32 (range {min}..={max})",
        counts.len()
    );
    assert!(fallbacks >= 80, "{fallbacks}");
    let share = served_large as f64 / results.len() as f64;
    assert!((share - 0.3).abs() <= 0.025, "served large share {share}");
    assert!(inside * 10 >= counts.len() * 6, "{inside} of {}", counts.len());
    let m = String::from_utf8(request(g.addr, "GET", "/metrics", &[], b"").body).unwrap();
    let amended = metric(&m, "routelmt_budget_amended_total{from=\"small\",to=\"large\"}");
    assert_eq!(amended as usize, fallbacks, "{m}");
    assert_eq!(metric(&m, "routelmt_served_total{route=\"large\"}") as usize, served_large);
    assert_eq!(g.stop(), Some(0));
}

#[test]
fn two_thousand_requests_at_concurrency_64_with_upstream_faults_lose_none() {
    // Every 7th small call and every 5th large call fails; one retry, then the other side.
    let (small, large) =
        (Stub::start("small", Mode::FailEvery(7)), Stub::start("large", Mode::FailEvery(5)));
    let args = with(
        base_args(&small, &large),
        &["--budget", "0.3", "--window", "100", "--retries", "1", "--batch-size", "16"],
    );
    let g = Gateway::start(&args, &[]);
    let t = Instant::now();
    let results = load(g.addr, 2000, 64);
    let took = t.elapsed();
    assert_eq!(results.len(), 2000, "every request answered");
    let ok = results.iter().filter(|r| r.3 == 200).count();
    // Not lost: 200, or an explicit OpenAI-style error (4xx, 502 when both sides failed, 503).
    let explicit =
        results.iter().filter(|r| [502, 503].contains(&r.3) || (400..500).contains(&r.3)).count();
    assert_eq!(ok + explicit, 2000, "only 200, 4xx, 502 or 503");
    let fallbacks = results.iter().filter(|r| r.3 == 200 && r.1 != r.2).count();
    let decided: Vec<(u64, bool)> =
        results.iter().filter(|r| r.0 > 0).map(|r| (r.0, r.1 == "large")).collect();
    let n = decided.len();
    let counts = served_windows(&results, 100);
    println!(
        "2000 requests at concurrency 64 in {took:.1?}: {ok} answered 200, {explicit} 4xx/502/503, \
         {fallbacks} fallbacks ({} small and {} large calls); served large per window of 100: \
         {:?}",
        small.n(),
        large.n(),
        (counts.iter().min(), counts.iter().max())
    );
    // Every decision holds the band (30 ± 2 of every 100).
    assert_eq!(n, 2000);
    assert_windows(decided, 100, 0.3);
    assert_eq!(g.stop(), Some(0));
}

#[test]
fn a_spend_cap_bounds_threshold_routing_on_what_was_served() {
    // The threshold sends everything large; the cap allows 25 of every 100 (served).
    let (small, large) = (Stub::start("small", Mode::Ok), Stub::start("large", Mode::Ok));
    let args = with(
        base_args(&small, &large),
        &["--threshold", "-1e30", "--max-large-share", "0.25", "--window", "100"],
    );
    let g = Gateway::start(&args, &[]);
    let results = load(g.addr, 400, 1);
    assert!(results.iter().all(|r| r.3 == 200));
    let counts = served_windows(&results, 100);
    assert!(counts.iter().all(|&c| c == 25), "{:?}", (counts.iter().min(), counts.iter().max()));
    let m = String::from_utf8(request(g.addr, "GET", "/metrics", &[], b"").body).unwrap();
    assert_eq!(metric(&m, "routelmt_served_total{route=\"large\"}"), 100.0, "{m}");
    assert_eq!(g.stop(), Some(0));
}

#[test]
fn streams_pass_through_byte_for_byte_and_the_request_is_the_clients() {
    let (small, large) = (Stub::start("small", Mode::Ok), Stub::start("large", Mode::Ok));
    let g = Gateway::start(&with(base_args(&small, &large), &["--threshold", "-1e30"]), &[]);
    let mut b = body(3);
    b["stream"] = json!(true);
    b["temperature"] = json!(0.25);
    let r = chat(g.addr, &b, &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-routelmt-route"), Some("large"));
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert_eq!(String::from_utf8(r.body).unwrap(), sse_body("large"));
    // The upstream got the client's request with its own model name.
    let sent: Value = serde_json::from_str(&large.bodies.lock().unwrap()[0]).unwrap();
    assert_eq!(
        (sent["model"].as_str(), sent["temperature"].as_f64()),
        (Some("lmt-large"), Some(0.25))
    );
    assert_eq!(sent["messages"], b["messages"]);
    // /v1/models and the explicit form.
    let models = request(g.addr, "GET", "/v1/models", &[], b"").json();
    assert_eq!(models["data"][0]["id"], "routelmt");
    let explicit = json!({"messages": [{"role": "user", "content": "anything"}],
        "routelmt": {"src": "Hallo Welt", "src_lang": "de", "tgt_lang": "en"}});
    let r = chat(g.addr, &explicit, &[]);
    assert_eq!(r.status, 200);
    let sent: Value = serde_json::from_str(&large.bodies.lock().unwrap()[1]).unwrap();
    assert!(sent.get("routelmt").is_none(), "the routelmt object is not forwarded");
}

#[test]
fn faults_fall_back_to_the_other_side_and_both_failing_is_a_clear_error() {
    let (small, large) = (Stub::start("small", Mode::Ok), Stub::start("large", Mode::Ok));
    // Everything routes large (threshold below every score).
    let args = with(
        base_args(&small, &large),
        &["--threshold", "-1e30", "--timeout-ms", "400", "--retries", "1"],
    );
    let g = Gateway::start(&args, &[]);
    // Slow but within the timeout: served by the routed side.
    large.set(Mode::Slow(100));
    let r = chat(g.addr, &body(3), &[]);
    assert_eq!((r.status, r.header("x-routelmt-served")), (200, Some("large")));
    for fault in [Mode::Fail, Mode::Reset, Mode::Hang] {
        large.set(fault);
        let before = large.n();
        let r = chat(g.addr, &body(1), &[]);
        assert_eq!(r.status, 200, "{fault:?}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(
            (r.header("x-routelmt-route"), r.header("x-routelmt-served")),
            (Some("large"), Some("small")),
            "{fault:?}"
        );
        assert_eq!(r.json()["choices"][0]["message"]["content"], "small");
        assert_eq!(large.n() - before, 2, "{fault:?}: one try and one retry");
    }
    large.set(Mode::Fail);
    small.set(Mode::Fail);
    let r = chat(g.addr, &body(2), &[]);
    assert_eq!(r.status, 502);
    let e = r.json();
    assert_eq!(e["error"]["type"], "upstream_error");
    assert!(e["error"]["message"].as_str().unwrap().contains("both upstreams failed"), "{e}");
    // Eight failures in a row: the large side cools down and is not even tried.
    large.set(Mode::Ok);
    small.set(Mode::Ok);
    let before = large.n();
    let r = chat(g.addr, &body(4), &[]);
    assert_eq!((r.status, r.header("x-routelmt-served")), (200, Some("small")));
    assert_eq!(large.n(), before, "a cooling upstream is skipped");
    let m = String::from_utf8(request(g.addr, "GET", "/metrics", &[], b"").body).unwrap();
    assert!(metric(&m, "routelmt_fallbacks_total{from=\"large\",to=\"small\"}") >= 3.0, "{m}");
    assert!(
        metric(&m, "routelmt_upstream_errors_total{upstream=\"large\",kind=\"timeout\"}") >= 2.0,
        "{m}"
    );
}

#[test]
fn a_429_waits_its_retry_after_or_falls_back_and_4xx_bodies_are_summarized() {
    let (small, large) = (Stub::start("small", Mode::Ok), Stub::start("large", Mode::Ok));
    // Everything routes large; one retry.
    let args = with(base_args(&small, &large), &["--threshold", "-1e30", "--retries", "1"]);
    let g = Gateway::start(&args, &[]);
    // 429 with Retry-After 1 s, then fine: the retry waits the second and is served large.
    large.set(Mode::RateLimited(1));
    let flip = {
        let large = large.clone();
        std::thread::spawn(move || {
            while large.n() == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
            large.set(Mode::Ok);
        })
    };
    let t = Instant::now();
    let r = chat(g.addr, &body(1), &[]);
    flip.join().unwrap();
    let waited = t.elapsed();
    println!("429 with Retry-After: 1 -> served after {waited:?}");
    assert_eq!((r.status, r.header("x-routelmt-served")), (200, Some("large")));
    assert!(waited >= Duration::from_millis(950), "waited {waited:?}");
    assert_eq!(large.n(), 2, "one 429, one retry");
    // Retry-After beyond the deadline: no wait, the small side serves at once, and the large
    // side cools down for the advertised time (the next request goes small first).
    large.set(Mode::RateLimited(600));
    let (before, t) = (large.n(), Instant::now());
    let mut served = Vec::new();
    for i in 0..20 {
        let r = chat(g.addr, &body(i), &[]);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        served.push(r.header("x-routelmt-served").map(String::from));
    }
    println!("20 requests with the large side answering 429 (Retry-After 600): {:?}", t.elapsed());
    assert!(served.iter().all(|s| s.as_deref() == Some("small")), "{served:?}");
    assert_eq!(large.n() - before, 1, "tried once, then cooled down");
    assert!(t.elapsed() < Duration::from_secs(10));
    let m = String::from_utf8(request(g.addr, "GET", "/metrics", &[], b"").body).unwrap();
    assert!(
        metric(&m, "routelmt_upstream_errors_total{upstream=\"large\",kind=\"rate_limited\"}")
            >= 2.0,
        "{m}"
    );
    drop(g);
    // A 401 (any 4xx but 429) is the upstream's answer: its status passes, its body does not.
    let (small, large) = (Stub::start("small", Mode::Ok), Stub::start("large", Mode::Unauthorized));
    let args = with(base_args(&small, &large), &["--threshold", "-1e30"]);
    let g = Gateway::start(&args, &[]);
    let r = chat(g.addr, &body(1), &[]);
    let text = String::from_utf8_lossy(&r.body).to_string();
    assert_eq!(r.status, 401, "{text}");
    assert!(!text.contains(ECHOED_KEY) && !text.contains("sk-"), "{text}");
    let e = r.json();
    assert_eq!(e["error"]["type"], "upstream_error");
    assert_eq!(e["error"]["code"], 401);
    assert_eq!(small.n(), 0, "a refusal is an answer, not a failure");
}

#[test]
fn a_client_that_disconnects_cancels_its_upstream_call() {
    let (small, large) = (Stub::start("small", Mode::Hang), Stub::start("large", Mode::Hang));
    let g = Gateway::start(&with(base_args(&small, &large), &["--threshold", "1e30"]), &[]);
    let mut conn = std::net::TcpStream::connect(g.addr).unwrap();
    let b = body(1).to_string();
    use std::io::Write;
    write!(conn, "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{b}", b.len()).unwrap();
    let started = Instant::now();
    while small.n() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the request never reached the upstream"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(conn);
    while small.cancelled.load(Ordering::SeqCst) == 0 {
        assert!(started.elapsed() < Duration::from_secs(20), "the upstream call was not cancelled");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_client_that_leaves_before_its_prefill_gets_none() {
    let (small, large) = (Stub::start("small", Mode::Ok), Stub::start("large", Mode::Ok));
    // Batches wait up to 1.5 s to fill: the client leaves while its request waits.
    let args = with(
        base_args(&small, &large),
        &["--threshold", "1e30", "--batch-size", "64", "--batch-wait-ms", "1500"],
    );
    let g = Gateway::start(&args, &[]);
    let metrics = || String::from_utf8(request(g.addr, "GET", "/metrics", &[], b"").body).unwrap();
    let rows = |m: &str| metric(m, "routelmt_prefill_rows_total");
    let before = rows(&metrics());
    let mut conn = std::net::TcpStream::connect(g.addr).unwrap();
    let b = body(1).to_string();
    use std::io::Write;
    write!(conn, "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{b}", b.len()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(conn);
    let started = Instant::now();
    while metric(&metrics(), "routelmt_dropped_before_prefill_total") < 1.0 {
        assert!(started.elapsed() < Duration::from_secs(10), "not dropped: {}", metrics());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(rows(&metrics()), before, "no prefill ran for it");
    assert_eq!(small.n() + large.n(), 0);
    assert_eq!(chat(g.addr, &body(2), &[]).status, 200, "the next request is served");
}

#[test]
fn over_capacity_gets_503_with_retry_after_and_a_stalled_stream_ends() {
    let (small, large) = (Stub::start("small", Mode::Slow(800)), Stub::start("large", Mode::Ok));
    // Two requests in progress at most: of six at once, two are served and four refused.
    let args = with(base_args(&small, &large), &["--threshold", "1e30", "--max-concurrent", "2"]);
    let g = Gateway::start(&args, &[]);
    let addr = g.addr;
    let clients: Vec<_> = (0..6)
        .map(|i| {
            std::thread::spawn(move || {
                let r = chat(addr, &body(i), &[]);
                (r.status, r.header("retry-after").map(String::from))
            })
        })
        .collect();
    let mut got: Vec<(u16, Option<String>)> =
        clients.into_iter().map(|c| c.join().unwrap()).collect();
    got.sort();
    assert_eq!(got.iter().filter(|r| r.0 == 200).count(), 2, "{got:?}");
    assert!(got.iter().filter(|r| r.0 != 200).all(|r| r.0 == 503 && r.1.as_deref() == Some("1")));
    assert_eq!(chat(g.addr, &body(9), &[]).status, 200, "served again once the two finished");
    drop(g);
    // One request waiting for a prefill at most (batches wait 1 s to fill): the second gets 503.
    let args = with(
        base_args(&small, &large),
        &[
            "--threshold",
            "1e30",
            "--max-queue",
            "1",
            "--batch-size",
            "64",
            "--batch-wait-ms",
            "1000",
        ],
    );
    let g = Gateway::start(&args, &[]);
    let addr = g.addr;
    let first = std::thread::spawn(move || chat(addr, &body(1), &[]).status);
    std::thread::sleep(Duration::from_millis(200));
    let r = chat(g.addr, &body(2), &[]);
    assert_eq!((r.status, r.header("retry-after")), (503, Some("1")));
    assert!(String::from_utf8_lossy(&r.body).contains("prefill queue is full"));
    assert_eq!(first.join().unwrap(), 200);
    drop(g);
    // A stream whose upstream stalls after its first event ends after the idle timeout.
    small.set(Mode::StallStream);
    let args = with(base_args(&small, &large), &["--threshold", "1e30", "--stream-idle-ms", "500"]);
    let g = Gateway::start(&args, &[]);
    let mut b = body(3);
    b["stream"] = json!(true);
    let b = b.to_string();
    let mut conn = std::net::TcpStream::connect(g.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    use std::io::{Read, Write};
    write!(conn, "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{b}", b.len()).unwrap();
    let t = Instant::now();
    let mut got = Vec::new();
    let _ = conn.read_to_end(&mut got);
    let took = t.elapsed();
    let text = String::from_utf8_lossy(&got);
    println!("a stream stalled upstream ended after {took:?}");
    assert!(text.contains("small-0") && !text.contains("[DONE]"), "{text}");
    assert!(took >= Duration::from_millis(450) && took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn a_body_that_does_not_arrive_in_time_gets_408() {
    let (small, large) = (Stub::start("small", Mode::Ok), Stub::start("large", Mode::Ok));
    let args =
        with(base_args(&small, &large), &["--threshold", "1e30", "--body-timeout-ms", "500"]);
    let g = Gateway::start(&args, &[]);
    // Headers announce 100 bytes; 10 come, then nothing.
    let mut conn = std::net::TcpStream::connect(g.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    use std::io::{Read, Write};
    write!(conn, "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"model\": ").unwrap();
    let t = Instant::now();
    let mut head = [0u8; 12];
    conn.read_exact(&mut head).unwrap();
    let took = t.elapsed();
    println!(
        "a body that stalls after 10 of 100 bytes: {} after {took:?}",
        String::from_utf8_lossy(&head)
    );
    assert_eq!(&head, b"HTTP/1.1 408");
    assert!(took >= Duration::from_millis(450) && took < Duration::from_secs(5), "{took:?}");
    assert_eq!(chat(g.addr, &body(1), &[]).status, 200, "the server keeps serving");
}

#[test]
fn a_request_head_that_does_not_arrive_in_time_closes_its_connection() {
    let (small, large) = (Stub::start("small", Mode::Ok), Stub::start("large", Mode::Ok));
    let args =
        with(base_args(&small, &large), &["--threshold", "1e30", "--header-timeout-ms", "500"]);
    let g = Gateway::start(&args, &[]);
    use std::io::{Read, Write};
    // Half a request line and one header, then nothing (a slowloris client); and a connection
    // that sends nothing at all.
    let mut slow = std::net::TcpStream::connect(g.addr).unwrap();
    let mut silent = std::net::TcpStream::connect(g.addr).unwrap();
    write!(slow, "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n").unwrap();
    let t = Instant::now();
    for conn in [&mut slow, &mut silent] {
        conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut rest = Vec::new();
        // The server closes the connection (maybe after a 408 status line).
        let _ = conn.read_to_end(&mut rest);
        let took = t.elapsed();
        println!("a stalled request head: closed after {took:?} ({} bytes)", rest.len());
        assert!(took >= Duration::from_millis(450) && took < Duration::from_secs(5), "{took:?}");
    }
    assert_eq!(chat(g.addr, &body(1), &[]).status, 200, "the server keeps serving");
}

#[test]
fn bad_input_gets_an_openai_error_and_the_server_keeps_serving() {
    let (small, large) = (Stub::start("small", Mode::Ok), Stub::start("large", Mode::Ok));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(&cfg, "[limits]\nmax_body_bytes = 4096\nmax_text_chars = 300\n").unwrap();
    let args =
        with(base_args(&small, &large), &["--config", cfg.to_str().unwrap(), "--budget", "0.5"]);
    let g = Gateway::start(&args, &[]);
    let post = |body: &[u8]| {
        request(
            g.addr,
            "POST",
            "/v1/chat/completions",
            &[("content-type", "application/json")],
            body,
        )
    };
    let long = json!({"messages": [{"role": "user", "content": "x".repeat(400)}]}).to_string();
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{not json".to_vec(), 400, "malformed JSON"),
        (b"[1, 2]".to_vec(), 400, "JSON object"),
        (b"{\"model\": \"x\"}".to_vec(), 400, "missing field 'messages'"),
        (b"{\"messages\": []}".to_vec(), 400, "non-empty array"),
        (b"{\"messages\": [{\"role\": \"user\"}]}".to_vec(), 400, "no text content"),
        (vec![b' '; 5000], 413, "too large"),
        (long.into_bytes(), 413, "over the 300 limit"),
        (
            json!({"messages": [{"role": "user", "content": "x"}],
                "routelmt": {"src": "Hallo", "src_lang": "de", "tgt_lang": "xx"}})
            .to_string()
            .into_bytes(),
            400,
            "unknown language code 'xx'",
        ),
    ];
    for (b, status, needle) in cases {
        let r = post(&b);
        assert_eq!(r.status, status, "{needle}: {}", String::from_utf8_lossy(&r.body));
        let e = r.json();
        assert_eq!(
            e["error"]["type"],
            if status == 413 || status == 400 { "invalid_request_error" } else { "" }
        );
        assert!(e["error"]["message"].as_str().unwrap().contains(needle), "{needle}: {e}");
        assert_eq!(chat(g.addr, &body(0), &[]).status, 200, "still serving after: {needle}");
    }
    assert_eq!(request(g.addr, "GET", "/nope", &[], b"").status, 404);
    assert_eq!(small.n() + large.n(), 8, "only the good requests went upstream");
}

#[test]
fn a_prompt_over_the_model_limit_gets_413_before_queueing_and_the_next_request_200() {
    let (small, large) = (Stub::start("small", Mode::Ok), Stub::start("large", Mode::Ok));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(&cfg, "[limits]\nmax_body_bytes = 1048576\nmax_text_chars = 100000\n").unwrap();
    let args =
        with(base_args(&small, &large), &["--config", cfg.to_str().unwrap(), "--budget", "0.5"]);
    let g = Gateway::start(&args, &[]);
    let source = "Der Hund läuft über die Straße. ".repeat(2000); // 64,000 characters
    let long = json!({"messages": [{"role": "user", "content": source}]}).to_string();
    let started = std::time::Instant::now();
    let r = request(
        g.addr,
        "POST",
        "/v1/chat/completions",
        &[("content-type", "application/json")],
        long.as_bytes(),
    );
    let took = started.elapsed();
    assert_eq!(r.status, 413, "{}", String::from_utf8_lossy(&r.body));
    let e = r.json();
    let message = e["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("tokens is over the model's") && message.contains("-token limit"),
        "{e}"
    );
    println!("64,000-character prompt: 413 in {took:.2?} ({message})");
    assert_eq!(chat(g.addr, &body(0), &[]).status, 200, "the next request is served");
    assert_eq!(small.n() + large.n(), 1, "the long prompt went nowhere");
}

#[test]
fn keys_stay_secret_and_inbound_tokens_are_enforced() {
    let (small, large) = (Stub::start("small", Mode::Ok), Stub::start("large", Mode::Fail));
    let secret = "sk-test-5f0c2e9a7b";
    let args = with(
        base_args(&small, &large),
        &[
            "--budget",
            "0.5",
            "--small-key-env",
            "T_SMALL_KEY",
            "--large-key-env",
            "T_LARGE_KEY",
            "--tokens-env",
            "T_TOKENS",
        ],
    );
    let env = [
        ("T_SMALL_KEY", secret),
        ("T_LARGE_KEY", secret),
        ("T_TOKENS", "tok-a, tok-b"),
        ("RUST_LOG", "debug"),
    ];
    let g = Gateway::start(&args, &env);
    let r = chat(g.addr, &body(0), &[]);
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["type"], "authentication_error");
    assert_eq!(chat(g.addr, &body(0), &[("authorization", "Bearer nope")]).status, 401);
    let mut seen = Vec::new();
    for i in 0..20 {
        let r = chat(g.addr, &body(i), &[("authorization", "Bearer tok-b")]);
        assert_eq!(r.status, 200);
        seen.push(String::from_utf8_lossy(&r.body).to_string());
        seen.extend(r.headers.values().cloned());
    }
    assert!(small.auth.lock().unwrap().iter().all(|a| a == &format!("Bearer {secret}")));
    assert!(
        !large.auth.lock().unwrap().is_empty(),
        "the failing large side was tried with its key"
    );
    let m = String::from_utf8(request(g.addr, "GET", "/metrics", &[], b"").body).unwrap();
    seen.push(m);
    let log = g.log();
    seen.push(log);
    assert!(seen.iter().all(|s| !s.contains(secret) && !s.contains("tok-b")), "a secret leaked");
    assert_eq!(g.stop(), Some(0));
}

#[test]
fn sigterm_drains_accepted_requests_then_exits_zero() {
    let (small, large) =
        (Stub::start("small", Mode::Slow(600)), Stub::start("large", Mode::Slow(600)));
    let g = Gateway::start(&with(base_args(&small, &large), &["--budget", "0.3"]), &[]);
    let addr = g.addr;
    let clients: Vec<_> =
        (0..8).map(|i| std::thread::spawn(move || chat(addr, &body(i), &[]).status)).collect();
    let started = Instant::now();
    while small.n() + large.n() < 8 {
        assert!(started.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(10));
    }
    let code = g.stop();
    let statuses: Vec<u16> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert_eq!(statuses, vec![200; 8], "accepted requests are answered");
    assert_eq!(code, Some(0));
}

#[test]
fn sigterm_turns_readyz_503_at_once_and_exits_by_the_drain_deadline() {
    // Both upstreams hang: the in-flight request never finishes by itself.
    let (small, large) = (Stub::start("small", Mode::Hang), Stub::start("large", Mode::Hang));
    let args = with(base_args(&small, &large), &["--budget", "0.3", "--drain-ms", "1500"]);
    let mut g = Gateway::start(&args, &[]);
    assert_eq!(request(g.addr, "GET", "/healthz", &[], b"").status, 200);
    // A request sent and never read back (the connection stays open until the end).
    let mut conn = std::net::TcpStream::connect(g.addr).unwrap();
    let b = body(0).to_string();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        b.len()
    );
    std::io::Write::write_all(&mut conn, (head + &b).as_bytes()).unwrap();
    let started = Instant::now();
    while small.n() + large.n() < 1 {
        assert!(started.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(10));
    }
    g.term();
    let t = Instant::now();
    // Still accepting for the grace period, but not ready.
    let mut ready = request(g.addr, "GET", "/readyz", &[], b"");
    while ready.status == 200 && t.elapsed() < Duration::from_millis(500) {
        ready = request(g.addr, "GET", "/readyz", &[], b"");
    }
    let turned = t.elapsed();
    assert_eq!(ready.status, 503, "{}", String::from_utf8_lossy(&ready.body));
    let code = loop {
        if let Some(s) = g.child.try_wait().unwrap() {
            break s.code();
        }
        assert!(t.elapsed() < Duration::from_secs(10), "did not exit: {}", g.log());
        std::thread::sleep(Duration::from_millis(20));
    };
    let exited = t.elapsed();
    println!("SIGTERM with a stalled stream: /readyz 503 after {turned:?}, exit after {exited:?}");
    assert!(exited >= Duration::from_millis(1400) && exited < Duration::from_secs(4), "{exited:?}");
    assert_eq!(code, Some(0));
    assert!(g.log().contains("drain deadline reached"), "{}", g.log());
    drop(conn);
}

struct Redis(Child, u16);

impl Redis {
    fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Redis::start_on(port)
    }

    fn start_on(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/setup.sh installs it)");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis(child, port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn two_replicas_hold_one_budget_through_redis_and_their_own_without() {
    let (small, large) = (Stub::start("small", Mode::Ok), Stub::start("large", Mode::Ok));
    let redis = Redis::start();
    let store = format!("redis://127.0.0.1:{}", redis.1);
    let shared = with(
        base_args(&small, &large),
        &["--budget", "0.3", "--window", "100", "--budget-store", &store],
    );
    let (a, b) = (Gateway::start(&shared, &[]), Gateway::start(&shared, &[]));
    // Replica A gets mostly short texts, B mostly long ones: different score mixes.
    let ra = std::thread::spawn({
        let addr = a.addr;
        move || load(addr, 500, 8)
    });
    let rb = load(b.addr, 300, 8);
    let mut all = ra.join().unwrap();
    all.extend(rb);
    assert!(all.iter().all(|r| r.3 == 200));
    assert_windows(all.iter().map(|r| (r.0, r.1 == "large")).collect(), 100, 0.3);
    drop((a, b));
    // Without a store each replica numbers and holds its own sequence.
    let own = with(base_args(&small, &large), &["--budget", "0.3", "--window", "100"]);
    let (a, b) = (Gateway::start(&own, &[]), Gateway::start(&own, &[]));
    for g in [&a, &b] {
        let r = load(g.addr, 300, 8);
        assert_windows(r.iter().map(|r| (r.0, r.1 == "large")).collect(), 100, 0.3);
    }
}

/// Length and large count of the store's list of recent decisions (window `w`).
fn store_list(port: u16, w: usize) -> (usize, usize) {
    let key = format!("routelmt:budget:w{w}:recent");
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "LRANGE", &key, "0", "-1"])
        .output()
        .expect("redis-cli (scripts/setup.sh installs redis)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let items: Vec<&str> = text.split_whitespace().collect();
    (items.len(), items.iter().filter(|x| **x == "1").count())
}

#[test]
fn fallbacks_are_recounted_in_the_shared_redis_list() {
    let (small, large) = (Stub::start("small", Mode::FailEvery(4)), Stub::start("large", Mode::Ok));
    let redis = Redis::start();
    let store = format!("redis://127.0.0.1:{}", redis.1);
    let args = with(
        base_args(&small, &large),
        &["--budget", "0.3", "--window", "50", "--retries", "0", "--budget-store", &store],
    );
    let g = Gateway::start(&args, &[]);
    let mut results = load(g.addr, 150, 2);
    assert!(results.iter().all(|r| r.3 == 200));
    std::thread::sleep(Duration::from_millis(300));
    // The store's list holds the last 49 decisions as served.
    results.sort_by_key(|r| r.0);
    let last: Vec<bool> = results[results.len() - 49..].iter().map(|r| r.2 == "large").collect();
    let fallbacks = results.iter().filter(|r| r.1 != r.2).count();
    let (n, c) = store_list(redis.1, 50);
    println!("{fallbacks} fallbacks; the store counts {c} large of {n}");
    assert!(fallbacks > 0);
    assert_eq!((n, c), (49, last.iter().filter(|&&l| l).count()));
    assert_eq!(g.stop(), Some(0));
}

#[test]
fn a_redis_restart_keeps_every_request_answered_and_the_band_held() {
    let (small, large) = (Stub::start("small", Mode::Ok), Stub::start("large", Mode::Ok));
    let mut redis = Redis::start();
    let port = redis.1;
    let store = format!("redis://127.0.0.1:{port}");
    let args = with(
        base_args(&small, &large),
        &["--budget", "0.3", "--window", "100", "--budget-store", &store],
    );
    let g = Gateway::start(&args, &[]);
    let before = load(g.addr, 200, 4);
    assert!(before.iter().all(|r| r.3 == 200));
    let (n, c) = store_list(port, 100);
    assert_eq!(n, 99);
    // Redis goes away: every request is still answered, quickly, on the local controller.
    let _ = redis.0.kill();
    let _ = redis.0.wait();
    let t = Instant::now();
    let down = load(g.addr, 150, 4);
    let took = t.elapsed();
    println!("150 requests with Redis down: {took:?} ({c} large of {n} in the list before)");
    assert!(down.iter().all(|r| r.3 == 200), "{down:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let share = down.iter().filter(|r| r.1 == "large").count() as f64 / down.len() as f64;
    assert!((share - 0.3).abs() <= 0.03, "large share while down {share}");
    let m = String::from_utf8(request(g.addr, "GET", "/metrics", &[], b"").body).unwrap();
    assert_eq!(metric(&m, "routelmt_budget_store_up"), 0.0, "{m}");
    assert!(metric(&m, "routelmt_budget_local_decisions_total") >= 150.0, "{m}");
    let ready = request(g.addr, "GET", "/readyz", &[], b"");
    assert_eq!(ready.status, 200);
    assert!(String::from_utf8_lossy(&ready.body).contains("local controller"));
    // Redis is back (empty: no persistence): within 10 s the gateway uses it again, the
    // decisions made meanwhile are in its list, and the band holds over it.
    let back = Redis::start_on(port);
    let t = Instant::now();
    loop {
        let r = chat(g.addr, &body(0), &[]);
        assert_eq!(r.status, 200);
        let m = String::from_utf8(request(g.addr, "GET", "/metrics", &[], b"").body).unwrap();
        if metric(&m, "routelmt_budget_store_up") == 1.0 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "store not used again: {m}");
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("back on Redis after {:?}", t.elapsed());
    let after = load(g.addr, 200, 4);
    assert!(after.iter().all(|r| r.3 == 200));
    let (n, c) = store_list(port, 100);
    assert_eq!(n, 99, "the list is full again");
    let share = c as f64 / n as f64;
    assert!((share - 0.3).abs() <= 0.03, "large share in the store's window {share}");
    drop(back);
}

/// `routelmt serve --check` with the base flags, `flag` set to `value` (replaced if present).
fn check_with(small: &Stub, large: &Stub, flag: &str, value: &str) -> crate::common::Cli {
    let mut args = with(base_args(small, large), &["--budget", "0.3"]);
    match args.iter().position(|a| a == flag) {
        Some(i) => args[i + 1] = value.to_string(),
        None => args.extend([flag.to_string(), value.to_string()]),
    }
    let mut cmd = crate::common::cli("serve").flag("--check");
    for pair in args.chunks(2) {
        cmd = cmd.arg(&pair[0], &pair[1]);
    }
    cmd
}

#[test]
fn check_validates_a_config_and_names_the_problem() {
    let (small, large) = (Stub::start("small", Mode::Ok), Stub::start("large", Mode::Ok));
    let err = |o: &std::process::Output| crate::common::stderr(o);
    let out = check_with(&small, &large, "--window", "200").ok();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("config ok"));
    let out = check_with(&small, &large, "--large-url", "ftp://x").fails();
    assert!(err(&out).contains("upstreams.large.base_url"), "{}", err(&out));
    let out = check_with(&small, &large, "--small-key-env", "UNSET_VAR_FOR_TEST").fails();
    assert!(err(&out).contains("$UNSET_VAR_FOR_TEST is not set"), "{}", err(&out));
    let tiny_gqa = fixture("models/tiny-gqa");
    let out = check_with(&small, &large, "--model", tiny_gqa.to_str().unwrap()).fails();
    assert!(err(&out).contains("another base model"), "{}", err(&out));
    let out = check_with(&small, &large, "--budget", "1.5").fails();
    assert!(err(&out).contains("budget.budget: 1.5"), "{}", err(&out));
}
