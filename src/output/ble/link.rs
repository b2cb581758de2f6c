//! The btleplug side of BLE-MIDI: find a peripheral offering the BLE-MIDI service, connect,
//! discover its services, subscribe to the MIDI characteristic, write packets without response,
//! notice a disconnect and reconnect.
//!
//! Async; runs on the BLE worker's tokio runtime (and on a short-lived one for [`scan`]). Never
//! on the real-time thread. Every await on the adapter or the device has a timeout, and errors
//! say what was found instead of what was asked for.
//!
//! On Linux btleplug talks to BlueZ (bluetoothd) over the D-Bus system bus. btleplug reports a
//! lost link as `CentralEvent::DeviceDisconnected` and never reconnects by itself: [`Link`] does
//! connect → discover services → subscribe again, and scans again when bluetoothd has forgotten
//! the device in the meantime.

use std::fmt;
use std::pin::Pin;
use std::time::{Duration, Instant};

use btleplug::api::{
    Central, CentralEvent, CentralState, Characteristic, Manager as _, Peripheral as _, ScanFilter, WriteType,
};
use btleplug::platform::{Adapter, Manager, Peripheral, PeripheralId};
use futures::{Stream, StreamExt};
use tokio::time::timeout;
use uuid::Uuid;

/// The BLE-MIDI service.
pub const MIDI_SERVICE: Uuid = Uuid::from_u128(0x03B8_0E5A_EDE8_4B33_A751_6CE3_4EC4_C700);
/// The BLE-MIDI data I/O characteristic (write without response, notify).
pub const MIDI_CHARACTERISTIC: Uuid = Uuid::from_u128(0x7772_E5DB_3868_4112_A1A9_F266_9D10_6BF3);

/// How long one D-Bus call to BlueZ may take before we call it failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one packet write may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the device list is looked at while scanning.
const SCAN_POLL: Duration = Duration::from_millis(100);

/// A BLE device seen while scanning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BleDevice {
    /// The advertised (or BlueZ alias) name.
    pub name: Option<String>,
    /// The Bluetooth address, `AA:BB:CC:11:22:33`.
    pub address: String,
    /// Signal strength in dBm, when known.
    pub rssi: Option<i16>,
    /// Whether it advertises the BLE-MIDI service.
    pub midi: bool,
}

impl fmt::Display for BleDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}", self.name.as_deref().unwrap_or("(no name)"), self.address)?;
        if let Some(r) = self.rssi {
            write!(f, ", {r} dBm")?;
        }
        f.write_str(")")
    }
}

/// Which device `ble:SPEC` means: an address, or a case-insensitive part of the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Address(String),
    Name(String),
}

impl Target {
    pub fn parse(spec: &str) -> Target {
        let s = spec.trim();
        let is_addr = s.len() == 17
            && s.split([':', '-']).count() == 6
            && s.split([':', '-']).all(|h| h.len() == 2 && h.chars().all(|c| c.is_ascii_hexdigit()));
        if is_addr { Target::Address(s.replace('-', ":").to_ascii_uppercase()) } else { Target::Name(s.to_string()) }
    }

    fn matches(&self, d: &BleDevice) -> bool {
        match self {
            Target::Address(a) => d.address.eq_ignore_ascii_case(a),
            Target::Name(n) => d.name.as_deref().is_some_and(|x| x.to_lowercase().contains(&n.to_lowercase())),
        }
    }

    fn exact(&self, d: &BleDevice) -> bool {
        match self {
            Target::Address(_) => true,
            Target::Name(n) => d.name.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(n)),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Address(a) => write!(f, "address {a}"),
            Target::Name(n) => write!(f, "'{n}'"),
        }
    }
}

/// Why Bluetooth LE MIDI could not be used: scanning, connecting, writing, reconnecting. Says
/// what was being done and what was found instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BleError {
    /// A BlueZ call failed: what was being done, and BlueZ's answer.
    Call {
        what: String,
        error: String,
    },
    /// A BlueZ call did not answer in time.
    NoAnswer {
        what: String,
        limit: Duration,
    },
    NoAdapter,
    AdapterOff,
    /// Several devices match (as shown to the user).
    Ambiguous {
        target: String,
        devices: Vec<String>,
    },
    /// No device matches within `limit`: the BLE-MIDI devices seen, and how many others.
    NotFound {
        target: String,
        limit: Duration,
        midi: Vec<String>,
        others: usize,
    },
    /// The device offers no BLE-MIDI characteristic (its services).
    NoMidiCharacteristic {
        device: String,
        services: Vec<String>,
    },
    /// The worker's async runtime could not be started.
    Runtime(String),
    /// The worker thread could not be started.
    Thread(String),
    /// Connecting (the whole of it) took too long.
    TimedOut {
        target: String,
    },
    /// The worker did not report back in time.
    NotInTime {
        name: String,
    },
    /// The device disconnected (BlueZ says so).
    Disconnected,
    /// BlueZ refused a write (BlueZ's answer): the packet was not sent.
    Refused {
        error: String,
    },
}

impl fmt::Display for BleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BleError::Call { what, error } => write!(f, "{what}: {error}"),
            BleError::NoAnswer { what, limit } => {
                write!(f, "{what}: no answer from BlueZ within {:.1} s", limit.as_secs_f64())
            }
            BleError::NoAdapter => f.write_str("no Bluetooth adapter found"),
            BleError::AdapterOff => f.write_str("the Bluetooth adapter is switched off (e.g. `bluetoothctl power on`)"),
            BleError::Ambiguous { target, devices } => write!(
                f,
                "{target} matches several Bluetooth devices: {}; give the full name or the address",
                devices.join(", ")
            ),
            BleError::NotFound { target, limit, midi, others } => {
                let also =
                    if *others > 0 { format!(" (and {others} other Bluetooth device(s))") } else { String::new() };
                let found = if midi.is_empty() { "no BLE-MIDI device at all".to_string() } else { midi.join(", ") };
                write!(
                    f,
                    "no BLE-MIDI device matching {target} found in {:.1} s; found: {found}{also}",
                    limit.as_secs_f64()
                )
            }
            BleError::NoMidiCharacteristic { device, services } => write!(
                f,
                "{device} has no BLE-MIDI characteristic {MIDI_CHARACTERISTIC} (services: {})",
                if services.is_empty() { "none".to_string() } else { services.join(", ") }
            ),
            BleError::Runtime(e) => write!(f, "cannot start the Bluetooth runtime: {e}"),
            BleError::Thread(e) => write!(f, "cannot start the BLE worker thread: {e}"),
            BleError::TimedOut { target } => write!(f, "connecting to {target} timed out"),
            BleError::Disconnected => f.write_str("the device disconnected"),
            BleError::Refused { error } => write!(f, "write refused by BlueZ: {error}"),
            BleError::NotInTime { name } => {
                write!(f, "connecting to the BLE-MIDI device '{name}' did not finish in time")
            }
        }
    }
}

impl std::error::Error for BleError {}

async fn within<T, E: fmt::Display>(
    limit: Duration,
    what: &str,
    f: impl Future<Output = Result<T, E>>,
) -> Result<T, BleError> {
    match timeout(limit, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(BleError::Call { what: what.to_string(), error: e.to_string() }),
        Err(_) => Err(BleError::NoAnswer { what: what.to_string(), limit }),
    }
}

/// The first Bluetooth adapter, powered on.
pub(crate) async fn first_adapter() -> Result<Adapter, BleError> {
    let manager =
        within(CALL_TIMEOUT, "cannot reach BlueZ over the D-Bus system bus (is bluetoothd running?)", Manager::new())
            .await?;
    let adapters = within(CALL_TIMEOUT, "cannot list Bluetooth adapters", manager.adapters()).await?;
    let adapter = adapters.into_iter().next().ok_or(BleError::NoAdapter)?;
    if let Ok(Ok(CentralState::PoweredOff)) = timeout(CALL_TIMEOUT, adapter.adapter_state()).await {
        return Err(BleError::AdapterOff);
    }
    Ok(adapter)
}

async fn describe(p: &Peripheral) -> Option<BleDevice> {
    let props = timeout(CALL_TIMEOUT, p.properties()).await.ok()?.ok()??;
    Some(BleDevice {
        name: props.local_name.or(props.advertisement_name),
        address: p.address().to_string(),
        rssi: props.rssi,
        midi: props.services.contains(&MIDI_SERVICE),
    })
}

async fn known_devices(adapter: &Adapter) -> Vec<(Peripheral, BleDevice)> {
    let Ok(Ok(ps)) = timeout(CALL_TIMEOUT, adapter.peripherals()).await else { return Vec::new() };
    let mut out = Vec::with_capacity(ps.len());
    for p in ps {
        if let Some(d) = describe(&p).await {
            out.push((p, d));
        }
    }
    out
}

async fn start_scan(adapter: &Adapter) -> Result<(), BleError> {
    within(
        CALL_TIMEOUT,
        "cannot start a Bluetooth scan",
        adapter.start_scan(ScanFilter { services: vec![MIDI_SERVICE] }),
    )
    .await
}

async fn stop_scan(adapter: &Adapter) {
    let _ = timeout(CALL_TIMEOUT, adapter.stop_scan()).await;
}

/// Scans for `duration` and returns the BLE-MIDI devices seen, strongest signal first.
pub(crate) async fn scan_async(adapter: &Adapter, duration: Duration) -> Result<Vec<BleDevice>, BleError> {
    start_scan(adapter).await?;
    tokio::time::sleep(duration).await;
    let mut found: Vec<BleDevice> =
        known_devices(adapter).await.into_iter().map(|(_, d)| d).filter(|d| d.midi).collect();
    stop_scan(adapter).await;
    found.sort_by(|a, b| b.rssi.unwrap_or(i16::MIN).cmp(&a.rssi.unwrap_or(i16::MIN)).then(a.address.cmp(&b.address)));
    Ok(found)
}

/// Scans for BLE-MIDI devices for `seconds` and lists them (name, address, signal strength),
/// strongest first. Runs its own short-lived runtime: call it from an ordinary thread.
///
/// # Errors
/// No D-Bus system bus or BlueZ, no adapter, the adapter is off, or the scan cannot start.
pub fn scan(seconds: f64) -> Result<Vec<BleDevice>, BleError> {
    let duration = Duration::from_secs_f64(seconds.clamp(0.1, 600.0));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BleError::Runtime(e.to_string()))?;
    rt.block_on(async {
        let adapter = first_adapter().await?;
        scan_async(&adapter, duration).await
    })
}

/// Scans until a device matching `target` shows up, or `limit` passes.
async fn find(adapter: &Adapter, target: &Target, limit: Duration) -> Result<(Peripheral, BleDevice), BleError> {
    let t0 = Instant::now();
    // A device BlueZ already knows (e.g. paired, or still connected) needs no scan; otherwise
    // scan. Either way the device list is looked at every SCAN_POLL.
    let mut scanning = false;
    let mut seen: Vec<BleDevice> = Vec::new();
    let result = loop {
        let devices = known_devices(adapter).await;
        let mut matches: Vec<(Peripheral, BleDevice)> =
            devices.iter().filter(|(_, d)| target.matches(d)).cloned().collect();
        for (_, d) in devices {
            match seen.iter_mut().find(|s| s.address == d.address) {
                Some(s) => *s = d,
                None => seen.push(d),
            }
        }
        if matches.len() > 1 {
            // Prefer an exact name, then devices that advertise BLE-MIDI.
            if matches.iter().any(|(_, d)| target.exact(d)) {
                matches.retain(|(_, d)| target.exact(d));
            }
            if matches.iter().any(|(_, d)| d.midi) {
                matches.retain(|(_, d)| d.midi);
            }
        }
        match matches.len() {
            1 => break Ok(matches.remove(0)),
            0 => {}
            _ => {
                let devices: Vec<String> = matches.iter().map(|(_, d)| d.to_string()).collect();
                break Err(BleError::Ambiguous { target: target.to_string(), devices });
            }
        }
        if t0.elapsed() >= limit {
            let midi: Vec<String> = seen.iter().filter(|d| d.midi).map(|d| d.to_string()).collect();
            let others = seen.len() - midi.len();
            break Err(BleError::NotFound { target: target.to_string(), limit, midi, others });
        }
        if !scanning {
            if let Err(e) = start_scan(adapter).await {
                break Err(e);
            }
            scanning = true;
        }
        tokio::time::sleep(SCAN_POLL).await;
    };
    if scanning {
        stop_scan(adapter).await;
    }
    result
}

type Events = Pin<Box<dyn Stream<Item = CentralEvent> + Send>>;

/// A connection to one BLE-MIDI peripheral that can be re-established.
pub(crate) struct Link {
    adapter: Adapter,
    events: Events,
    target: Target,
    peripheral: Peripheral,
    id: PeripheralId,
    characteristic: Characteristic,
    device: BleDevice,
    mtu: u16,
    events_ended: bool,
    /// A disconnect event was taken and not yet checked against BlueZ.
    suspect: bool,
}

impl Link {
    /// Finds the device, connects, discovers services and subscribes, all within `limit`.
    pub async fn open(target: Target, limit: Duration) -> Result<Link, BleError> {
        let t0 = Instant::now();
        let adapter = first_adapter().await?;
        let events = within(CALL_TIMEOUT, "cannot listen to Bluetooth events", adapter.events()).await?;
        let (peripheral, device) = find(&adapter, &target, limit).await?;
        let left = limit.saturating_sub(t0.elapsed()).max(Duration::from_secs(1));
        let (characteristic, mtu) = connect(&peripheral, &device, left).await?;
        let id = peripheral.id();
        Ok(Link {
            adapter,
            events,
            target,
            peripheral,
            id,
            characteristic,
            device,
            mtu,
            events_ended: false,
            suspect: false,
        })
    }

    pub fn device(&self) -> &BleDevice {
        &self.device
    }

    /// The ATT MTU: the characteristic's `MTU` property where BlueZ has it (5.62+), else 23.
    pub fn mtu(&self) -> u16 {
        self.mtu
    }

    /// Writes one packet without response. A [`BleError::Refused`] packet was not sent; after
    /// any other error it may have reached the device (BlueZ took it and did not answer in
    /// time, say).
    pub async fn write(&self, packet: &[u8]) -> Result<(), BleError> {
        let write = self.peripheral.write(&self.characteristic, packet, WriteType::WithoutResponse);
        match timeout(WRITE_TIMEOUT, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if refused_by_bluez(&e) => Err(BleError::Refused { error: e.to_string() }),
            Ok(Err(e)) => Err(BleError::Call { what: "write failed".into(), error: e.to_string() }),
            Err(_) => Err(BleError::NoAnswer { what: "write failed".into(), limit: WRITE_TIMEOUT }),
        }
    }

    /// Completes when BlueZ reports that our device disconnected (and it is not connected
    /// again already: a late event from before a reconnect is ignored). Cancel-safe: a
    /// disconnect event taken while the check that follows it is cancelled is checked again on
    /// the next call, not lost (the worker would otherwise learn of the loss only from its next
    /// failed write, however long the engine has nothing to send).
    pub async fn disconnected(&mut self) {
        if self.events_ended {
            // Without events, failed writes are how a loss shows.
            return futures::future::pending().await;
        }
        loop {
            if !self.suspect {
                match self.events.next().await {
                    Some(CentralEvent::DeviceDisconnected(id)) if id == self.id => self.suspect = true,
                    Some(_) => continue,
                    None => {
                        // The event stream ended (BlueZ went away): report a loss once.
                        self.events_ended = true;
                        return;
                    }
                }
            }
            let still = matches!(timeout(CALL_TIMEOUT, self.peripheral.is_connected()).await, Ok(Ok(true)));
            self.suspect = false;
            if !still {
                return;
            }
        }
    }

    /// One reconnection attempt within `limit`: connect → discover services → subscribe,
    /// scanning again first when BlueZ no longer knows the device.
    pub async fn reconnect(&mut self, limit: Duration) -> Result<(), BleError> {
        let t0 = Instant::now();
        let known = matches!(timeout(CALL_TIMEOUT, self.adapter.peripheral(&self.id)).await, Ok(Ok(_)));
        if !known {
            let (p, d) = find(&self.adapter, &self.target, limit).await?;
            self.id = p.id();
            self.peripheral = p;
            self.device = d;
        }
        let left = limit.saturating_sub(t0.elapsed()).max(Duration::from_millis(500));
        let (c, mtu) = connect(&self.peripheral, &self.device, left).await?;
        self.characteristic = c;
        self.mtu = mtu;
        Ok(())
    }

    /// Disconnects (at the end of playback), within a second.
    pub async fn disconnect(&self) {
        let _ = timeout(Duration::from_secs(1), self.peripheral.disconnect()).await;
    }

    /// Drains pending adapter events without waiting (e.g. a stale disconnect from before a
    /// reconnect).
    pub fn drain_events(&mut self) {
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        while let std::task::Poll::Ready(Some(_)) = self.events.as_mut().poll_next(&mut cx) {}
        self.suspect = false;
    }
}

/// Whether BlueZ itself answered with an error (`org.bluez.Error.*`, e.g. `Failed: Not
/// connected`): bluetoothd answers a write without response once it has queued the packet for
/// the link, or with an error when it could not, so the packet was not sent. Any other failure
/// (the D-Bus connection, no answer) leaves it unknown.
fn refused_by_bluez(e: &btleplug::Error) -> bool {
    #[cfg(target_os = "linux")]
    if let btleplug::Error::Other(inner) = e
        && let Some(bluez_async::BluetoothError::DbusError(d)) = inner.downcast_ref::<bluez_async::BluetoothError>()
    {
        return d.name().is_some_and(|n| n.starts_with("org.bluez.Error."));
    }
    let _ = e;
    false
}

/// Connects (unless BlueZ is still connected), discovers services, finds the BLE-MIDI
/// characteristic and subscribes to it.
async fn connect(p: &Peripheral, d: &BleDevice, limit: Duration) -> Result<(Characteristic, u16), BleError> {
    let t0 = Instant::now();
    let already = matches!(timeout(CALL_TIMEOUT, p.is_connected()).await, Ok(Ok(true)));
    if !already {
        within(limit, &format!("cannot connect to {d}"), p.connect()).await?;
    }
    let left = limit.saturating_sub(t0.elapsed()).max(Duration::from_millis(500));
    within(left, &format!("cannot discover the services of {d}"), p.discover_services()).await?;
    let chars = p.characteristics();
    let c = chars.iter().find(|c| c.uuid == MIDI_CHARACTERISTIC && c.service_uuid == MIDI_SERVICE).cloned();
    let Some(c) = c else {
        let services: Vec<String> = p.services().iter().map(|s| s.uuid.to_string()).collect();
        return Err(BleError::NoMidiCharacteristic { device: d.to_string(), services });
    };
    within(CALL_TIMEOUT, &format!("cannot subscribe to the BLE-MIDI characteristic of {d}"), p.subscribe(&c)).await?;
    Ok((c, p.mtu()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_parsing() {
        assert_eq!(Target::parse("aa:bb:cc:11:22:33"), Target::Address("AA:BB:CC:11:22:33".into()));
        assert_eq!(Target::parse("AA-BB-CC-11-22-33"), Target::Address("AA:BB:CC:11:22:33".into()));
        assert_eq!(Target::parse(" WIDI Jack "), Target::Name("WIDI Jack".into()));
        assert_eq!(Target::parse("AA:BB:CC:11:22"), Target::Name("AA:BB:CC:11:22".into()));
        let d = BleDevice {
            name: Some("WIDI Jack".into()),
            address: "AA:BB:CC:11:22:33".into(),
            rssi: Some(-52),
            midi: true,
        };
        assert!(Target::parse("widi").matches(&d));
        assert!(!Target::parse("widi").exact(&d));
        assert!(Target::parse("widi jack").exact(&d));
        assert!(Target::parse("aa:bb:cc:11:22:33").matches(&d));
        assert!(!Target::parse("Bud").matches(&d));
        assert_eq!(d.to_string(), "WIDI Jack (AA:BB:CC:11:22:33, -52 dBm)");
    }

    #[test]
    fn uuids_are_the_spec_ones() {
        assert_eq!(MIDI_SERVICE.to_string(), "03b80e5a-ede8-4b33-a751-6ce34ec4c700");
        assert_eq!(MIDI_CHARACTERISTIC.to_string(), "7772e5db-3868-4112-a1a9-f2669d106bf3");
    }
}
