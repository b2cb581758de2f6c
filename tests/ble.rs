//! Bluetooth LE MIDI against a simulated BlueZ (tests/support/bluez_midi.py on a private D-Bus).
//!
//! (The output tests come with the output.)
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

use std::process::Command;

use bluez::{Params, SimBluez, Start};

fn start(params: Params) -> Option<SimBluez> {
    match SimBluez::start(&params) {
        Start::Ready(s) => Some(s),
        Start::Skip(reason) => {
            bluez::skip(&reason);
            None
        }
    }
}

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
