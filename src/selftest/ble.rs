//! The self-test of a Bluetooth LE MIDI output: connect as `organ play` does, then the real
//! engine plays the burst's note-offs with their planned timing (each stamped with its
//! scheduled time, as playing does); read back the link's packet size and the write times.
//!
//! The output is not given the plan (`prepare`): without one it has no registration to
//! restore after a dropped link, so even a reconnect mid-test sends nothing but the probes.

use std::time::{Duration, Instant};

use super::{BLE_INTERVAL, Check, Probe, SelftestError, short};
use crate::midi::Micros;
use crate::organ::Organ;
use crate::output::ble::BleOutput;
use crate::output::ble::codec::payload_for_mtu;

/// The connection interval range Linux asks for, from debugfs (units of 1.25 ms), when readable
/// (root, debugfs mounted). The device may ask for another; BlueZ does not report the one in use.
fn requested_interval() -> Option<(Micros, Micros)> {
    let read = |f: &str| -> Option<u64> {
        std::fs::read_to_string(format!("/sys/kernel/debug/bluetooth/hci0/{f}")).ok()?.trim().parse().ok()
    };
    let (lo, hi) = (read("conn_min_interval")?, read("conn_max_interval")?);
    Some((Micros(lo * 1250), Micros(hi * 1250)))
}

/// Sends the probes through the connected output `out` with their planned timing.
///
/// # Errors
/// The engine cannot start.
pub fn checks(out: BleOutput, organ: &Organ, probes: &[Probe]) -> Result<Vec<Check>, SelftestError> {
    let (device, handle) = (out.device().to_string(), out.stats_handle());
    let report = super::play(vec![Box::new(out)], super::probe_timeline(organ, probes)?)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while handle.stats().messages + handle.stats().dropped < probes.len() as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let s = handle.stats();
    // Writes what is left and disconnects.
    let finished = report.outputs.into_iter().map(|mut o| o.finish()).collect::<Result<Vec<()>, _>>();
    let delivered = s.messages == probes.len() as u64 && s.dropped == 0 && s.link_losses == 0;
    let ok = delivered && Micros(s.write_us_max) <= BLE_INTERVAL && finished.is_ok();
    let interval = match requested_interval() {
        Some((lo, hi)) => format!("Linux asks for a connection interval of {}-{}", short(lo), short(hi)),
        None => "BlueZ does not report the connection interval".to_string(),
    };
    let text = format!(
        "{}: MTU {} ({} bytes a packet); {} of {} timestamped note-offs written in {} packets, \
         slowest write {}; {interval} (BLE-MIDI devices run at 7.5-15 ms: every message waits up to one for the radio)",
        device,
        s.mtu,
        payload_for_mtu(s.mtu),
        s.messages,
        probes.len(),
        s.packets,
        short(Micros(s.write_us_max)),
    );
    let mut c = Check::new("ble", ok, text).summary("Bluetooth LE adds up to one connection interval (7.5-15 ms)");
    if !ok {
        c = c.advice(if s.link_losses > 0 {
            "the link dropped: bring the laptop closer to the organ or use a wired connection (WIDI Bud Pro or a USB cable)"
        } else {
            "the radio link is slow: use a wired connection (WIDI Bud Pro or a USB cable)"
        });
    }
    Ok(vec![c])
}
