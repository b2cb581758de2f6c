//! Command-to-organ latency of the phone remote over loopback: from a WebSocket command leaving
//! the "phone" to the first resulting message handed to the organ's output.
//!
//! In one process: `organ service`'s [`Service`] over a session whose output stamps the wall
//! clock when the engine hands it a message, driven by the remote server exactly as
//! `organ service --remote` drives it without a terminal ([`serve_headless`]). A client logs
//! in with the PIN over HTTP, opens the WebSocket with the page's Host, Origin and cookie, then
//! repeats: `start` the first hymn of scores/services/sunday.toml (the latency includes
//! planning it) and, a moment later, `stop` (until the release's first all-notes-off).
//!
//! Run: `cargo bench --bench remote_latency` (prints p50/p99/max in ms; README records the
//! figures). A custom harness: latency is a distribution over real round trips.

#[path = "../tests/support/web.rs"]
#[allow(dead_code)]
mod web;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use organ::organ::DisconnectPolicy;
use organ::output::{Output, OutputError, OutputSpec, Stamp};
use organ::service::remote::{Listen, Remote};
use organ::service::{Service, order, serve_headless};
use organ::session::Session;

/// The binary, for web.rs's `RemoteOrgan` (not used here).
#[allow(dead_code)]
fn organ_command(args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_organ"));
    c.args(args);
    c
}

/// Stamps (ns since `base`) the first message after a reset, and the first CC 123.
struct Stamping {
    base: Instant,
    first: Arc<AtomicU64>,
    release: Arc<AtomicU64>,
}

impl Output for Stamping {
    fn name(&self) -> &str {
        "stamping"
    }
    fn send(&mut self, bytes: &[u8], _at: Stamp) -> Result<(), OutputError> {
        let now = self.base.elapsed().as_nanos() as u64;
        let _ = self.first.compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst);
        if bytes.len() == 3 && bytes[0] & 0xF0 == 0xB0 && bytes[1] == 123 {
            let _ = self.release.compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst);
        }
        Ok(())
    }
}

fn wait_stamp(a: &AtomicU64) -> u64 {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let v = a.load(Ordering::SeqCst);
        if v != 0 {
            return v;
        }
        assert!(Instant::now() < end, "nothing reached the output");
        std::hint::spin_loop();
    }
}

/// CPU time the hypervisor took from this virtual machine ("steal", /proc/stat), in ms: a
/// stalled virtual CPU delays every thread and explains outliers no program can avoid.
fn steal_ms() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: u64 = stat.lines().next()?.split_whitespace().nth(8)?.parse().ok()?;
    Some(ticks * 10) // USER_HZ = 100
}

/// The 1-minute load average (other work on the machine).
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_default()
}

fn percentiles(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{name:<6} n={} p50={:.2} ms p99={:.2} ms max={:.2} ms{}",
        ms.len(),
        at(0.5),
        at(0.99),
        ms[ms.len() - 1],
        if at(0.99) < 50.0 { "  (target p99 < 50 ms: met)" } else { "  (target p99 < 50 ms: NOT met)" }
    );
}

fn main() {
    let n: usize = std::env::var("ORGAN_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let order = order::load(&root.join("scores/services/sunday.toml"), None).expect("the shipped order of service");
    let base = Instant::now();
    let (first, release) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut session = Session::new(vec![OutputSpec::Null], DisconnectPolicy::Pause);
    session.insert_output(0, Box::new(Stamping { base, first: first.clone(), release: release.clone() }));
    let remote = Remote::start(&Listen::parse("127.0.0.1:0").unwrap()).expect("the remote listens");
    let addr = remote.local_addr().expect("an address");
    let (host, pin) = (format!("{addr}"), remote.pin.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let driver = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut svc = Service::new(order, session);
            serve_headless(&mut svc, &remote, &stop);
            svc.finish();
        })
    };

    let cookie = web::login(addr, &host, &pin).expect("log in");
    let origin = format!("http://{host}");
    let mut ws = web::ws_connect(addr, &[("Host", &host), ("Origin", &origin), ("Cookie", &cookie)]).expect("ws");
    let idle = |v: &serde_json::Value| web::is_state(v).is_some_and(|s| s["state"] == "idle");
    ws.wait_for("idle", Duration::from_secs(10), idle);
    let (mut starts, mut stops) = (Vec::new(), Vec::new());
    let (steal, load_before) = (steal_ms(), load());
    for i in 0..n {
        first.store(0, Ordering::SeqCst);
        let t0 = base.elapsed().as_nanos() as u64;
        ws.send(r#"{"cmd":"start","item":0}"#);
        starts.push((wait_stamp(&first) - t0) as f64 / 1e6);
        ws.wait_for("playing", Duration::from_secs(10), |v| web::is_state(v).is_some_and(|s| s["state"] != "idle"));
        // Stop somewhere in the first second of the play-over.
        std::thread::sleep(Duration::from_millis(50 + (i as u64 * 37) % 400));
        release.store(0, Ordering::SeqCst);
        let t1 = base.elapsed().as_nanos() as u64;
        ws.send(r#"{"cmd":"stop"}"#);
        stops.push((wait_stamp(&release) - t1) as f64 / 1e6);
        ws.wait_for("idle again", Duration::from_secs(10), idle);
    }
    stop.store(true, Ordering::SeqCst);
    driver.join().expect("the service thread");
    let steal = steal.zip(steal_ms()).map_or("?".into(), |(a, b)| (b - a).to_string());
    println!(
        "command-to-organ latency of the remote over loopback ({n} rounds; load average {load_before} → {}; steal {steal} ms):",
        load()
    );
    percentiles("start", starts);
    percentiles("stop", stops);
}
