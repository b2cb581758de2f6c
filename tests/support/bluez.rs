//! A simulated BlueZ for tests: a private dbus-daemon (its own bus.conf in a temporary folder)
//! and python-dbusmock running `bluez_midi.py` beside this file, which offers a BLE-MIDI
//! peripheral and records what is written to it.
//!
//! libdbus (under btleplug) reads `DBUS_SYSTEM_BUS_ADDRESS` once per process, so the program
//! under test must run as a child process with [`SimBluez::bus_address`] in that variable: one
//! bus per test. Everything here has a timeout; [`Drop`] kills both processes and removes the
//! folder. When dbus-daemon or dbusmock is not installed, [`SimBluez::start`] returns
//! [`Start::Skip`] with the reason, and the test prints `SKIPPED: <reason>` (see [`skip`]).

#![allow(dead_code)] // each test binary uses a different part

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// The interpreter that has dbusmock on Debian (`python3` first on PATH may be another one).
pub const PYTHON: &str = "/usr/bin/python3";

/// Parameters of the simulated device (see the header of bluez_midi.py).
#[derive(Debug, Clone)]
pub struct Params {
    pub name: String,
    pub address: String,
    /// 0 = no MTU property (btleplug then assumes 23).
    pub mtu: u16,
    pub discover_delay_ms: i64,
    pub resolve_delay_ms: u64,
    /// Lose the link after this many writes of a connection (0 = never).
    pub drop_link_after_writes: u32,
    pub drop_link_times: u32,
    /// "signal" (BlueZ reports the loss 200 ms after the write), "write-error" (that write
    /// fails) or "no-answer" (that write reaches the device, and its answer comes only after
    /// `no_answer_ms`, when the link has gone).
    pub drop_mode: &'static str,
    pub no_answer_ms: u64,
    /// Lose the link only on a write whose packet leaves a key down (channels 1-3).
    pub drop_with_note_on: bool,
    /// Stop answering on this write of the piece (or, with `drop_with_note_on`, the first from
    /// this one on that leaves a key down), once: it reaches the device, its answer comes
    /// `stall_ms` later and the link stays up; the mock does nothing else meanwhile (0 = never).
    pub stall_after_writes: u32,
    pub stall_ms: u64,
    /// After a link loss, refuse Connect for this long.
    pub unreachable_ms: u64,
    /// Forget the device this long after it disconnected (0 = never).
    pub temporary_timeout_ms: u64,
    pub keep_gatt: bool,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            name: "WIDI Jack".into(),
            address: "AA:BB:CC:11:22:33".into(),
            mtu: 247,
            discover_delay_ms: 100,
            resolve_delay_ms: 20,
            drop_link_after_writes: 0,
            drop_link_times: 1,
            drop_mode: "signal",
            no_answer_ms: 2500,
            drop_with_note_on: false,
            stall_after_writes: 0,
            stall_ms: 1500,
            unreachable_ms: 0,
            temporary_timeout_ms: 0,
            keep_gatt: true,
        }
    }
}

/// Either a running simulated BlueZ or why it cannot run here.
pub enum Start {
    Ready(SimBluez),
    Skip(String),
}

/// Prints the standard skip line. Tests call it and return. Written straight to the process's
/// stderr, which the test harness does not capture, so a skip shows in a plain `cargo test`.
///
/// # Panics
/// Where the tools are required: under CI (`CI` set, as `.ci/run` runs, after `.ci/setup`
/// installed them) or with `ORGAN_REQUIRE_BLUEZ` set, a missing tool fails the test instead.
pub fn skip(reason: &str) {
    use std::io::Write;
    for var in ["ORGAN_REQUIRE_BLUEZ", "CI"] {
        if std::env::var_os(var).is_some_and(|v| !v.is_empty() && v != "0" && v != "false") {
            panic!("{var} is set, so the simulated BlueZ must run, but: {reason}");
        }
    }
    // libtest names each test's thread after the test.
    let test = std::thread::current().name().filter(|n| *n != "main").map(|n| format!("{n}: ")).unwrap_or_default();
    // One write, so that parallel tests' lines do not interleave.
    let _ = std::io::stderr().write_all(format!("SKIPPED: {test}{reason}\n").as_bytes());
}

/// One record of the capture file.
#[derive(Debug, Clone, PartialEq)]
pub enum Captured {
    /// A value written to a characteristic.
    Write { t: f64, uuid: String, write_type: String, bytes: Vec<u8> },
    /// "connect", "connect-refused", "link-down", "write-failed", "no-answer", "stall" or
    /// "answered".
    Event { t: f64, event: String },
}

pub struct SimBluez {
    dir: PathBuf,
    daemon: Child,
    mock: Child,
    address: String,
    capture: PathBuf,
    log: PathBuf,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn have_program(p: &str) -> bool {
    Command::new(p).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Runs `f` on a thread and waits at most `timeout` for its answer.
fn with_timeout<T: Send + 'static>(timeout: Duration, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(timeout).ok()
}

impl SimBluez {
    /// Starts a private bus and the simulated BlueZ, and waits (at most 10 s) until `org.bluez`
    /// is on the bus.
    ///
    /// # Panics
    /// When the tools exist but the simulation does not come up (a real failure).
    pub fn start(params: &Params) -> Start {
        if !have_program("dbus-daemon") {
            return Start::Skip("dbus-daemon not found (install the Debian package `dbus`)".into());
        }
        let probe = Command::new(PYTHON).args(["-c", "import dbusmock"]).stderr(Stdio::null()).status();
        if !probe.is_ok_and(|s| s.success()) {
            return Start::Skip(format!(
                "python-dbusmock not importable by {PYTHON} (install the Debian package `python3-dbusmock`)"
            ));
        }
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("organ-bluez-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the temporary folder");
        let conf = dir.join("bus.conf");
        fs::write(
            &conf,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <keep_umask/>
  <listen>unix:dir={}</listen>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                dir.display()
            ),
        )
        .expect("write bus.conf");
        let mut daemon = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dbus-daemon");
        let stdout = daemon.stdout.take().expect("dbus-daemon stdout");
        let address = with_timeout(Duration::from_secs(5), move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).ok().map(|_| line.trim().to_string())
        })
        .flatten()
        .filter(|a| !a.is_empty());
        let Some(address) = address else {
            let _ = daemon.kill();
            let _ = daemon.wait();
            panic!("dbus-daemon printed no address within 5 s");
        };

        let capture = dir.join("capture.jsonl");
        let log = dir.join("mock.log");
        let json = format!(
            r#"{{"name": "{}", "address": "{}", "capture": "{}", "mtu": {}, "discover_delay_ms": {}, "resolve_delay_ms": {}, "drop_link_after_writes": {}, "drop_link_times": {}, "drop_mode": "{}", "no_answer_ms": {}, "drop_with_note_on": {}, "stall_after_writes": {}, "stall_ms": {}, "unreachable_ms": {}, "temporary_timeout_ms": {}, "keep_gatt": {}, "notify_hex": ""}}"#,
            params.name,
            params.address,
            capture.display(),
            params.mtu,
            params.discover_delay_ms,
            params.resolve_delay_ms,
            params.drop_link_after_writes,
            params.drop_link_times,
            params.drop_mode,
            params.no_answer_ms,
            params.drop_with_note_on,
            params.stall_after_writes,
            params.stall_ms,
            params.unreachable_ms,
            params.temporary_timeout_ms,
            params.keep_gatt
        );
        let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/bluez_midi.py");
        let mock = Command::new(PYTHON)
            .args(["-m", "dbusmock", "--system", "--template"])
            .arg(&template)
            .args(["-p", &json, "-l"])
            .arg(&log)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("mock.stderr")).expect("mock.stderr"))
            .spawn();
        let mock = match mock {
            Ok(m) => m,
            Err(e) => {
                let _ = daemon.kill();
                let _ = daemon.wait();
                panic!("cannot start {PYTHON} -m dbusmock: {e}");
            }
        };
        let mut sim = SimBluez { dir, daemon, mock, address, capture, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if sim.name_has_owner("org.bluez") {
                break;
            }
            if let Ok(Some(status)) = sim.mock.try_wait() {
                panic!("the simulated BlueZ exited ({status}): {}", sim.stderr());
            }
            if Instant::now() > deadline {
                panic!("org.bluez did not appear on the private bus within 10 s: {}", sim.stderr());
            }
            thread::sleep(Duration::from_millis(50));
        }
        Start::Ready(sim)
    }

    fn name_has_owner(&self, name: &str) -> bool {
        let out = Command::new("dbus-send")
            .args(["--system", "--print-reply", "--reply-timeout=1000", "--dest=org.freedesktop.DBus", "/"])
            .args(["org.freedesktop.DBus.NameHasOwner", &format!("string:{name}")])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.address)
            .stderr(Stdio::null())
            .output();
        out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("boolean true"))
    }

    /// A private folder for the test's own files (removed with the simulation).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The private bus, for `DBUS_SYSTEM_BUS_ADDRESS` of the child under test.
    pub fn bus_address(&self) -> &str {
        &self.address
    }

    /// What the mock printed to stderr (for failure messages).
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.dir.join("mock.stderr")).unwrap_or_default()
    }

    /// The dbusmock call log.
    pub fn call_log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Everything captured so far, in order.
    pub fn captured(&self) -> Vec<Captured> {
        let text = fs::read_to_string(&self.capture).unwrap_or_default();
        text.lines().filter(|l| !l.trim().is_empty()).map(parse_record).collect()
    }

    /// The payloads written to the BLE-MIDI characteristic, in order.
    pub fn midi_writes(&self) -> Vec<Vec<u8>> {
        self.captured()
            .into_iter()
            .filter_map(|c| match c {
                Captured::Write { uuid, bytes, .. } if uuid.eq_ignore_ascii_case(MIDI_CHAR) => Some(bytes),
                _ => None,
            })
            .collect()
    }

    /// Waits until `pred` holds for the capture, at most `timeout`.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&[Captured]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.captured()) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

pub const MIDI_CHAR: &str = "7772e5db-3868-4112-a1a9-f2669d106bf3";

impl Drop for SimBluez {
    fn drop(&mut self) {
        let _ = self.mock.kill();
        let _ = self.mock.wait();
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        if std::env::var_os("ORGAN_KEEP_BLUEZ_LOGS").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("simulated BlueZ files kept in {}", self.dir.display());
        }
    }
}

/// Parses one capture line (a flat JSON object written by bluez_midi.py).
fn parse_record(line: &str) -> Captured {
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("capture line {line:?}: {e}"));
    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default().to_string();
    let t = v.get("t").and_then(|x| x.as_f64()).unwrap_or(0.0);
    if v.get("event").is_some() {
        return Captured::Event { t, event: text("event") };
    }
    let bytes =
        text("hex").split_whitespace().map(|h| u8::from_str_radix(h, 16).expect("hex byte in the capture")).collect();
    Captured::Write { t, uuid: text("uuid"), write_type: text("type"), bytes }
}
