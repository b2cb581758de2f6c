//! Bluetooth LE MIDI against a simulated BlueZ (tests/support/bluez_midi.py on a private D-Bus).
//!
//! libdbus reads `DBUS_SYSTEM_BUS_ADDRESS` once per process, so each test starts its own bus
//! and simulated BlueZ, then runs the code under test in a child process with that address:
//! - `organ ble scan` through the real binary;
//! - [`BleOutput`] driven by the `child` test of this same binary, re-executed (`#[ignore]`d so
//!   it never runs on its own). It plays a plan the way the engine will (each message handed
//!   over at its due time, pausing while the link is down under `pause`) and prints what it sent.
//!   This keeps the driver beside the tests that judge it, with no test-only flag in the real
//!   binary; once `organ play` exists, the same checks run against `organ play --to ble:…`.
//!
//! The parent decodes every captured write with the project's own BLE-MIDI decoder and checks
//! each message and its timestamp, the packet sizes, and after a link loss the release and the
//! registration restore.
//!
//! Where dbus-daemon or python-dbusmock is missing, each test prints `SKIPPED: <reason>`.

#![cfg(feature = "ble")]

#[path = "support/bluez.rs"]
mod bluez;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bluez::{Captured, Params, SimBluez, Start};
use organ::midi::Micros;
use organ::organ::registration::At;
use organ::organ::{DisconnectPolicy, Organ, Registration};
use organ::output::ble::codec::{Decoded, Decoder};
use organ::output::{Link, Output, Stamp};
use organ::plan::{self, PlanOptions, Speed, Timeline};
use serde_json::{Value, json};

const CHILD_ENV: &str = "ORGAN_BLE_TEST_CHILD";

/// The piece the tests play: BWV 643 bars 1-3 at triple speed (about 3.9 s, 190 messages,
/// one registration throughout, a cancel at the start and at the end).
fn test_plan() -> Timeline {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let organ = Organ::find("st-marys").expect("organ");
    let score = organ::score::load_file(&root.join("scores/bwv643.mid")).expect("score");
    let reg_text = std::fs::read_to_string(root.join("scores/bwv643.toml")).expect("registration");
    let reg = Registration::from_toml(&reg_text, "bwv643.toml", &organ).expect("registration");
    let opts = PlanOptions {
        until: Some(At::parse("3").unwrap()),
        speed: Speed::parse_tempo("300%").unwrap(),
        ..PlanOptions::default()
    };
    plan::plan(&score, &organ, Some(&reg), &opts).expect("plan")
}

fn start(params: Params) -> Option<SimBluez> {
    match SimBluez::start(&params) {
        Start::Ready(s) => Some(s),
        Start::Skip(reason) => {
            bluez::skip(&reason);
            None
        }
    }
}

/// Runs the child half with `config`; returns its RESULT object.
fn run_child(sim: &SimBluez, config: Value) -> Value {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args(["child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, config.to_string())
        .env("DBUS_SYSTEM_BUS_ADDRESS", sim.bus_address())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let deadline = Instant::now() + Duration::from_secs(40);
    while child.try_wait().expect("child status").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("child output");
            panic!(
                "the child ran over 40 s\nstdout: {}\nstderr: {}\nmock: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                sim.stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("child output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if std::env::var_os("ORGAN_BLE_TEST_VERBOSE").is_some() {
        eprintln!("child stdout:\n{stdout}\nchild stderr:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    let line = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")).unwrap_or_else(|| {
        panic!(
            "no RESULT from the child ({})\nstdout: {stdout}\nstderr: {}\nmock: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            sim.stderr()
        )
    });
    serde_json::from_str(line).expect("RESULT json")
}

/// What the child handed over: (plan µs, due µs, bytes).
fn sent(result: &Value) -> Vec<(u64, u64, Vec<u8>)> {
    result["sent"]
        .as_array()
        .expect("sent")
        .iter()
        .map(|s| {
            let bytes = s[2].as_str().unwrap().split_whitespace().map(|h| u8::from_str_radix(h, 16).unwrap()).collect();
            (s[0].as_u64().unwrap(), s[1].as_u64().unwrap(), bytes)
        })
        .collect()
}

fn stat(result: &Value, name: &str) -> u64 {
    result["stats"][name].as_u64().unwrap_or_else(|| panic!("stat {name} in {result}"))
}

/// Splits the capture at each `connect`: the MIDI writes of each connection, in order.
fn connections(captured: &[Captured]) -> Vec<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<Vec<u8>>> = Vec::new();
    for c in captured {
        match c {
            Captured::Event { event, .. } if event == "connect" => out.push(Vec::new()),
            Captured::Write { uuid, bytes, .. } if uuid.eq_ignore_ascii_case(bluez::MIDI_CHAR) => {
                out.last_mut().expect("a write before any connect").push(bytes.clone())
            }
            _ => {}
        }
    }
    out
}

fn decode(packets: &[Vec<u8>]) -> Vec<Decoded> {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        d.decode(p, &mut out).unwrap_or_else(|e| panic!("packet {i} {p:02X?}: {e}"));
    }
    assert!(!d.in_sysex(), "a SysEx was left open");
    out
}

fn ts(due_us: u64) -> u16 {
    ((due_us / 1000) % 8192) as u16
}

/// Keys down after these messages (division channels 1-3 = wire 0-2).
fn keys_down(msgs: &[Decoded]) -> BTreeSet<(u8, u8)> {
    let mut down = BTreeSet::new();
    for m in msgs {
        let b = &m.bytes;
        if b.len() == 3 && b[0] & 0x0F <= 2 {
            match b[0] & 0xF0 {
                0x90 if b[2] > 0 => {
                    down.insert((b[0] & 0x0F, b[1]));
                }
                0x80 | 0x90 => {
                    down.remove(&(b[0] & 0x0F, b[1]));
                }
                0xB0 if b[1] == 123 => down.retain(|&(c, _)| c != b[0] & 0x0F),
                _ => {}
            }
        }
    }
    down
}

/// Checks that `msgs` start with the release for `down` (note-offs covering every key down,
/// then CC 123 on the three division channels); returns how many messages that took.
fn check_release(msgs: &[Decoded], down: &BTreeSet<(u8, u8)>) -> usize {
    let offs: BTreeSet<(u8, u8)> = msgs
        .iter()
        .take_while(|m| m.bytes.len() == 3 && m.bytes[0] & 0xF0 == 0x80 && m.bytes[0] & 0x0F <= 2)
        .map(|m| (m.bytes[0] & 0x0F, m.bytes[1]))
        .collect();
    assert!(offs.is_superset(down), "keys down {down:?} but note-offs only for {offs:?}");
    let n = offs.len();
    let cc: Vec<Vec<u8>> = msgs[n..n + 3].iter().map(|m| m.bytes.clone()).collect();
    assert_eq!(
        cc,
        [vec![0xB0, 123, 0], vec![0xB1, 123, 0], vec![0xB2, 123, 0]],
        "CC 123 per division after the note-offs"
    );
    n + 3
}

/// The cancel then the starting registration's `on` messages (the registration of bars 1-3).
fn expected_registration(t: &Timeline) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = t.cancel.iter().map(|m| t.bytes(m).to_vec()).collect();
    for &id in &t.registrations[0].drawn {
        v.extend(t.controls[id].on.iter().map(|m| t.bytes(m).to_vec()));
    }
    v
}

fn bytes_of(msgs: &[Decoded]) -> Vec<Vec<u8>> {
    msgs.iter().map(|m| m.bytes.clone()).collect()
}

// ------------------------------------------------------------------------------------- tests --

#[test]
fn ble_scan_lists_the_simulated_device() {
    let Some(sim) = start(Params::default()) else { return };
    let out = Command::new(env!("CARGO_BIN_EXE_organ"))
        .args(["ble", "scan", "--seconds", "0.5"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", sim.bus_address())
        .output()
        .expect("run organ");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("  WIDI Jack  AA:BB:CC:11:22:33  -52 dBm\n"), "{stdout}");
    assert!(stdout.contains("--to ble:\"WIDI Jack\""), "{stdout}");
}

#[test]
fn ble_open_says_what_it_found_instead() {
    let Some(sim) = start(Params { discover_delay_ms: 50, ..Params::default() }) else { return };
    let r = run_child(
        &sim,
        json!({"mode": "open", "targets": ["Bud Pro", "aa:bb:cc:11:22:33", "widi"], "open_timeout_ms": 1500}),
    );
    let opened = r["opened"].as_array().unwrap();
    assert_eq!(
        opened[0].as_str().unwrap(),
        "error: no BLE-MIDI device matching 'Bud Pro' found in 1.5 s; found: WIDI Jack (AA:BB:CC:11:22:33, -52 dBm)"
    );
    assert_eq!(opened[1].as_str().unwrap(), "ok: WIDI Jack (AA:BB:CC:11:22:33, -52 dBm)");
    assert_eq!(opened[2].as_str().unwrap(), "ok: WIDI Jack (AA:BB:CC:11:22:33, -52 dBm)");
}

#[test]
fn ble_delivers_the_plan_with_scheduled_timestamps_in_small_packets() {
    // No MTU property (BlueZ < 5.62): btleplug assumes 23, so packets carry at most 20 bytes.
    let Some(sim) = start(Params { mtu: 0, ..Params::default() }) else { return };
    let r = run_child(&sim, json!({"mode": "play", "policy": "pause"}));
    let sent = sent(&r);
    let plan = test_plan();
    assert_eq!(sent.len(), plan.events.len(), "the child plays the whole plan");
    let writes = sim.midi_writes();
    assert!(writes.iter().all(|w| w.len() <= 20), "a packet over MTU − 3: {:?}", writes.iter().map(Vec::len).max());
    let got = decode(&writes);
    assert_eq!(bytes_of(&got), sent.iter().map(|s| s.2.clone()).collect::<Vec<_>>(), "every message, in order");
    for (i, (m, s)) in got.iter().zip(&sent).enumerate() {
        assert_eq!(m.timestamp, ts(s.1), "message {i} {:02X?}: timestamp {} for due {} µs", m.bytes, m.timestamp, s.1);
    }
    // Messages due together travel together: fewer writes than messages.
    assert!(writes.len() < sent.len() * 3 / 4, "{} writes for {} messages", writes.len(), sent.len());
    assert!(sim.captured().iter().all(|c| !matches!(c, Captured::Write { write_type, .. } if write_type != "command")));
    assert_eq!(stat(&r, "messages"), sent.len() as u64);
    assert_eq!(stat(&r, "packets"), writes.len() as u64);
    assert_eq!(stat(&r, "dropped"), 0);
    assert_eq!(stat(&r, "link_losses"), 0);
    assert!(keys_down(&got).is_empty());
}

/// Link loss mid-piece, policy `continue`: the gap is dropped, never played late; on reconnect
/// the keys are released and the registration restored before the music goes on.
#[test]
fn ble_link_loss_with_continue_drops_the_gap_and_restores() {
    let Some(sim) = start(Params { drop_link_after_writes: 45, unreachable_ms: 700, ..Params::default() }) else {
        return;
    };
    let r = run_child(&sim, json!({"mode": "play", "policy": "continue"}));
    let sent = sent(&r);
    let plan = test_plan();
    assert_eq!(sent.len(), plan.events.len(), "under continue the engine never waits");
    let conns = connections(&sim.captured());
    assert_eq!(conns.len(), 2, "one reconnect");
    assert!(conns.iter().flatten().all(|w| w.len() <= 244), "MTU 247: at most 244 bytes a packet");
    let before = decode(&conns[0]);
    let after = decode(&conns[1]);

    // Before the loss: a prefix of what was handed over, each at its scheduled time.
    let a = before.len();
    assert_eq!(bytes_of(&before), sent[..a].iter().map(|s| s.2.clone()).collect::<Vec<_>>());
    assert!(before.iter().zip(&sent).all(|(m, s)| m.timestamp == ts(s.1)));

    // After: release, registration from a known state, then the rest of the piece.
    let n = check_release(&after, &keys_down(&before));
    let reg = expected_registration(&plan);
    assert_eq!(bytes_of(&after[n..n + reg.len()]), reg, "cancel, then the stops drawn");
    let rest = &after[n + reg.len()..];
    let b = sent.len() - rest.len();
    assert!(b > a, "something fell in the gap (a {a}, b {b})");
    assert_eq!(bytes_of(rest), sent[b..].iter().map(|s| s.2.clone()).collect::<Vec<_>>(), "a suffix of the plan");
    for (m, s) in rest.iter().zip(&sent[b..]) {
        assert_eq!(m.timestamp, ts(s.1), "after the gap every message keeps its scheduled time");
    }
    assert_eq!(stat(&r, "dropped"), (b - a) as u64, "what was not written was counted as dropped");
    assert_eq!(stat(&r, "link_losses"), 1);
    assert_eq!(stat(&r, "reconnects"), 1);
    assert!(r["saw_down"].as_bool().unwrap());
    let mut all = before.clone();
    all.extend_from_slice(&after);
    assert!(keys_down(&all).is_empty(), "every key released at the end");
}

/// Link loss mid-piece shown by a failed write, policy `pause`, and bluetoothd forgets the
/// device meanwhile (so the output must scan again): nothing is lost (the failed write is
/// written again after the restore), the engine waits, and the restore comes first.
#[test]
fn ble_link_loss_with_pause_rescans_restores_and_loses_nothing() {
    let Some(sim) = start(Params {
        drop_link_after_writes: 45,
        drop_mode: "write-error",
        unreachable_ms: 600,
        temporary_timeout_ms: 300,
        keep_gatt: false,
        ..Params::default()
    }) else {
        return;
    };
    let r = run_child(&sim, json!({"mode": "play", "policy": "pause"}));
    let sent = sent(&r);
    let plan = test_plan();
    assert_eq!(sent.len(), plan.events.len());
    assert!(r["saw_down"].as_bool().unwrap(), "the engine saw the link down and paused");
    let captured = sim.captured();
    assert!(captured.iter().any(|c| matches!(c, Captured::Event { event, .. } if event == "write-failed")));
    let conns = connections(&captured);
    assert_eq!(conns.len(), 2, "one reconnect");
    assert!(
        sim.call_log().matches("StartDiscovery").count() >= 2,
        "the device expired, so the output scanned again:\n{}",
        sim.call_log()
    );
    let before = decode(&conns[0]);
    let after = decode(&conns[1]);
    let a = before.len();
    assert_eq!(bytes_of(&before), sent[..a].iter().map(|s| s.2.clone()).collect::<Vec<_>>());
    let n = check_release(&after, &keys_down(&before));
    let reg = expected_registration(&plan);
    assert_eq!(bytes_of(&after[n..n + reg.len()]), reg, "cancel, then the stops drawn");
    let rest = &after[n + reg.len()..];
    assert_eq!(bytes_of(rest), sent[a..].iter().map(|s| s.2.clone()).collect::<Vec<_>>(), "nothing lost under pause");
    // Messages handed over before the engine noticed the loss are played right after the
    // restore with their send time; everything after that keeps its scheduled time.
    let held = rest.iter().zip(&sent[a..]).take_while(|(m, s)| m.timestamp != ts(s.1)).count();
    assert!(held <= 12, "{held} messages held across the gap");
    for (m, s) in rest.iter().zip(&sent[a..]).skip(held) {
        assert_eq!(m.timestamp, ts(s.1), "{:02X?}", m.bytes);
    }
    assert_eq!(stat(&r, "dropped"), 0);
    assert_eq!(stat(&r, "link_losses"), 1);
    assert_eq!(stat(&r, "reconnects"), 1);
    let mut all = before.clone();
    all.extend_from_slice(&after);
    assert!(keys_down(&all).is_empty());
}

/// Stop while the link is down and stays down: finish returns after the grace period.
#[test]
fn ble_shutdown_while_disconnected_is_prompt() {
    let Some(sim) = start(Params { drop_link_after_writes: 45, unreachable_ms: 60_000, ..Params::default() }) else {
        return;
    };
    let r = run_child(&sim, json!({"mode": "play", "policy": "pause", "finish_on_down": true, "grace_ms": 1000}));
    assert!(r["saw_down"].as_bool().unwrap());
    let ms = r["finish_ms"].as_u64().unwrap();
    assert!((900..3000).contains(&ms), "finish took {ms} ms with a 1 s grace");
    assert!(r["finish_error"].is_null(), "{r}");
    assert_eq!(connections(&sim.captured()).len(), 1, "never got the link back");
}

/// Stop while the link is down, and it comes back before the grace runs out: the keys are
/// released and the registration cancelled; nothing queued is played.
#[test]
fn ble_shutdown_releases_when_the_link_comes_back() {
    let Some(sim) = start(Params { drop_link_after_writes: 45, unreachable_ms: 400, ..Params::default() }) else {
        return;
    };
    let r = run_child(&sim, json!({"mode": "play", "policy": "pause", "finish_on_down": true, "grace_ms": 5000}));
    assert!(r["saw_down"].as_bool().unwrap());
    let ms = r["finish_ms"].as_u64().unwrap();
    assert!(ms < 5000, "finish took {ms} ms");
    let conns = connections(&sim.captured());
    assert_eq!(conns.len(), 2, "reconnected during the grace");
    let before = decode(&conns[0]);
    let after = decode(&conns[1]);
    let n = check_release(&after, &keys_down(&before));
    let plan = test_plan();
    let cancel: Vec<Vec<u8>> = plan.cancel.iter().map(|m| plan.bytes(m).to_vec()).collect();
    assert_eq!(bytes_of(&after[n..]), cancel, "then the cancel, and nothing else");
    let last = sim.captured().into_iter().rev().find_map(|c| match c {
        Captured::Event { event, .. } => Some(event),
        _ => None,
    });
    assert_eq!(last.as_deref(), Some("link-down"), "disconnected at the end");
}

// ------------------------------------------------------------------------------ child half --

/// The child half of the tests above, run by them in a process of its own (see the module
/// documentation). Does nothing when run directly.
#[test]
#[ignore = "child process of the BLE tests; they run it with the simulated BlueZ's bus"]
fn child() {
    let Ok(config) = std::env::var(CHILD_ENV) else {
        println!("nothing to do: this is the child half of the BLE tests");
        return;
    };
    let config: Value = serde_json::from_str(&config).expect("config");
    let result = match config["mode"].as_str() {
        Some("open") => child_open(&config),
        Some("play") => child_play(&config),
        other => panic!("unknown mode {other:?}"),
    };
    // On a line of its own (the test harness prints "test child ... " before it).
    println!("\nRESULT {result}");
}

fn policy(config: &Value) -> DisconnectPolicy {
    match config["policy"].as_str() {
        Some("continue") => DisconnectPolicy::Continue,
        _ => DisconnectPolicy::Pause,
    }
}

fn child_open(config: &Value) -> Value {
    let limit = Duration::from_millis(config["open_timeout_ms"].as_u64().unwrap_or(5000));
    let mut opened = Vec::new();
    for target in config["targets"].as_array().unwrap() {
        match organ::output::ble::open(target.as_str().unwrap(), DisconnectPolicy::Pause, limit) {
            Ok(mut out) => {
                opened.push(format!("ok: {}", out.device()));
                out.finish().unwrap();
            }
            Err(e) => opened.push(format!("error: {e}")),
        }
    }
    json!({ "opened": opened })
}

/// Plays the test plan the way the engine will: absolute deadlines, each message handed over
/// at its due time; under `pause`, stops the clock while the link is down.
fn child_play(config: &Value) -> Value {
    let policy = policy(config);
    let timeline = Arc::new(test_plan());
    let mut out = organ::output::ble::open("WIDI Jack", policy, Duration::from_secs(5)).expect("open");
    out.set_shutdown_grace(Duration::from_millis(config["grace_ms"].as_u64().unwrap_or(2000)));
    out.prepare(&timeline).expect("prepare");
    let finish_on_down = config["finish_on_down"].as_bool().unwrap_or(false);
    let t0 = Instant::now();
    let clock = || Micros(t0.elapsed().as_micros() as u64);
    let mut paused = Micros(0);
    let mut saw_down = false;
    let mut sent = Vec::new();
    'play: for e in &timeline.events {
        loop {
            if out.link() == Link::Down {
                saw_down = true;
                if finish_on_down {
                    break 'play;
                }
                if policy == DisconnectPolicy::Pause {
                    let p0 = clock();
                    let give_up = Instant::now() + Duration::from_secs(20);
                    while out.link() == Link::Down && Instant::now() < give_up {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    assert_eq!(out.link(), Link::Up, "the link never came back");
                    paused = paused + clock().saturating_sub(p0);
                }
            }
            let due = e.t + paused;
            let now = clock();
            if now >= due {
                break;
            }
            std::thread::sleep(Duration::from_micros((due.0 - now.0).min(1000)));
        }
        let due = e.t + paused;
        let bytes = timeline.bytes(&e.msg);
        out.send(bytes, Stamp { plan: e.t, due, now: clock() }).expect("send");
        sent.push(json!([e.t.0, due.0, organ::midi::HexBytes(bytes).to_string()]));
    }
    let f0 = Instant::now();
    let finish_error = out.finish().err();
    let finish_ms = f0.elapsed().as_millis() as u64;
    let s = out.stats();
    json!({
        "sent": sent,
        "saw_down": saw_down,
        "finish_ms": finish_ms,
        "finish_error": finish_error,
        "last_event": out.last_event(),
        "stats": {
            "messages": s.messages, "packets": s.packets, "dropped": s.dropped,
            "link_losses": s.link_losses, "reconnects": s.reconnects,
        },
    })
}
