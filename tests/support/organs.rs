//! The test organs: St Mary's (organs/st-marys.toml, shipped), and one small organ for the
//! planner tests, in the variants they need — three divisions (Swell on channel 1, Great on 2,
//! Pedal on 3 with a 36-67 pedalboard), three stops in three message forms (note, CC, note on
//! channel 16), a coupler in program changes, a preset, an optional General Cancel, and the
//! stop lead and pace in ms. [`TestOrgan::bare`] is the same keyboards with no stops at all, so
//! that the music starts at 0.

use std::path::PathBuf;

use organ::organ::Organ;

use super::repo_dir;

/// The General Cancel of the test organ.
pub const SYSEX_CANCEL: &str = "F0 00 4A 4F 48 41 53 7F F7";

pub fn st_marys_path() -> PathBuf {
    repo_dir().join("organs/st-marys.toml")
}

pub fn st_marys() -> Organ {
    Organ::load(&st_marys_path()).expect("organs/st-marys.toml loads")
}

/// A variant of the test organ.
#[derive(Debug, Clone, Copy)]
pub struct TestOrgan {
    /// Stops, coupler and preset (false: keyboards only).
    pub controls: bool,
    pub cancel: bool,
    pub lead_ms: u32,
    pub pace_ms: u32,
}

const KEYBOARDS: &str = r#"
[division.swell]
code = "S"
channel = 1
[division.great]
code = "G"
channel = 2
[division.pedal]
code = "P"
channel = 3
compass = [36, 67]
"#;

const CONTROLS: &str = r#"[[stop]]
name = "Sw Flute 8"
division = "swell"
on = { note = 36, channel = 16 }
[[stop]]
name = "Gt Diapason 8"
division = "great"
on = { cc = 20, value = 127, channel = 16 }
[[stop]]
name = "Ped Bourdon 16"
division = "pedal"
on = { note = 60, channel = 16 }
[[coupler]]
name = "Sw to Ped"
from = "swell"
to = "pedal"
on = { program = 5, channel = 16 }
off = { program = 6, channel = 16 }
[preset]
mf = ["Sw Flute 8", "Gt Diapason 8", "Ped Bourdon 16"]
"#;

impl TestOrgan {
    /// Stops with a stop lead and pace, with or without a General Cancel.
    pub fn new(lead_ms: u32, pace_ms: u32, cancel: bool) -> TestOrgan {
        TestOrgan { controls: true, cancel, lead_ms, pace_ms }
    }

    /// The keyboards alone: no stops, no timing; notes start at 0.
    pub fn bare() -> TestOrgan {
        TestOrgan { controls: false, cancel: false, lead_ms: 0, pace_ms: 0 }
    }

    /// The organ definition.
    pub fn toml(&self) -> String {
        if !self.controls {
            return format!("name = \"Bare\"{KEYBOARDS}");
        }
        let cancel =
            if self.cancel { format!("[cancel]\nmessage = {{ sysex = \"{SYSEX_CANCEL}\" }}\n") } else { String::new() };
        format!(
            "name = \"Test Organ\"{KEYBOARDS}{CONTROLS}{cancel}[timing]\nstop_lead_ms = {}\nstop_pace_ms = {}\n",
            self.lead_ms, self.pace_ms
        )
    }

    /// The organ, loaded.
    pub fn organ(&self) -> Organ {
        let source = if self.controls { "test-organ.toml" } else { "bare.toml" };
        Organ::from_toml(&self.toml(), source).expect("the test organ loads")
    }
}
