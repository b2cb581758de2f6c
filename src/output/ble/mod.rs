//! Bluetooth LE MIDI: the packet codec (always built; pure) and, with the `ble` feature, the
//! btleplug link and the `BleOutput` worker.

pub mod codec;
