//! Writing GrandOrgue's per-organ settings file (`.cmb`).
//!
//! Format (GrandOrgue 3.9.5, `GOConfigFileWriter` / `GOConfigFileReader`): a UTF-8 BOM, then INI
//! sections. Only the settings `organ` owns are written:
//!
//! ```text
//! [Organ]
//! ChurchName=<exactly the ODF's>      ; otherwise GrandOrgue warns in a dialog
//! [Manual001]                          ; one per ODF manual ([Manual000] = pedal)
//! NumberOfMIDIEvents=1
//! MIDIDevice001=                       ; empty: any input device
//! MIDIEventType001=Note
//! MIDIChannel001=2
//! MIDILowerKey001=0
//! MIDIUpperKey001=127
//! MIDIKeyShift001=0
//! MIDILowerLimit001=1                  ; velocity 1-127 sounds, 0 releases
//! MIDIUpperLimit001=127
//! [Stop003]                            ; the ODF's section names: Stop/Coupler/TremulantNNN
//! NumberOfMIDIEvents=1
//! MIDIDevice001=
//! MIDIEventType001=Note                ; see events.rs for the types used
//! MIDIChannel001=16
//! MIDIKey001=36
//! MIDILowerLimit001=0
//! MIDIUpperLimit001=127
//! [Switch007]                          ; a switch, where the stop follows one (Function=And …)
//! …
//! [Enclosure001]                       ; a division's expression controller
//! NumberOfMIDIEvents=1
//! MIDIDevice001=
//! MIDIEventType001=ControlChange
//! MIDIChannel001=1
//! MIDIKey001=11
//! MIDILowerLimit001=0
//! MIDIUpperLimit001=127
//! ```
//!
//! Elements that take MIDI (`Function=Input`) but have no binding get `NumberOfMIDIEvents=0`, so
//! that nothing else drives them; computed elements get no section (GrandOrgue does not read one
//! and would warn), nor do enclosures without an expression controller (GrandOrgue's own
//! settings for them stay). No
//! `ODFHash` is written (GrandOrgue would ask in a modal dialog whether to import when the ODF
//! changes), and no key that GrandOrgue does not read for the event type (it warns about unused
//! entries).

use super::events::Pattern;

/// A settings file being built: sections in order, keys in order.
#[derive(Debug, Clone, Default)]
pub struct Cmb {
    header: Vec<String>,
    sections: Vec<Section>,
}

#[derive(Debug, Clone)]
struct Section {
    name: String,
    comment: Option<String>,
    entries: Vec<(String, String)>,
}

impl Cmb {
    pub fn new() -> Cmb {
        Cmb::default()
    }

    /// A `;` comment line at the top of the file.
    pub fn header(&mut self, line: &str) {
        self.header.push(line.replace(['\n', '\r'], " "));
    }

    /// Starts a section; `comment` goes on a `;` line above it.
    pub fn section(&mut self, name: &str, comment: Option<String>) {
        self.sections.push(Section { name: name.to_string(), comment, entries: Vec::new() });
    }

    /// Adds `key=value` to the current section.
    ///
    /// # Panics
    /// Without a current section (a programming error).
    pub fn entry(&mut self, key: &str, value: &str) {
        let s = self.sections.last_mut().expect("cmb entry outside a section");
        s.entries.push((key.to_string(), value.replace(['\n', '\r'], " ")));
    }

    /// The receiver events of an element: `NumberOfMIDIEvents` and each pattern's keys.
    pub fn receiver(&mut self, patterns: &[Pattern]) {
        self.entry("NumberOfMIDIEvents", &patterns.len().to_string());
        for (i, p) in patterns.iter().enumerate() {
            for (k, v) in p.cmb_keys(i + 1) {
                self.entry(&k, &v);
            }
        }
    }

    /// A manual receiving notes on `channel` (1-16), all keys, unshifted.
    pub fn manual_receiver(&mut self, channel: u8) {
        self.entry("NumberOfMIDIEvents", "1");
        for (k, v) in [
            ("MIDIDevice001", String::new()),
            ("MIDIEventType001", "Note".to_string()),
            ("MIDIChannel001", channel.to_string()),
            ("MIDILowerKey001", "0".into()),
            ("MIDIUpperKey001", "127".into()),
            ("MIDIKeyShift001", "0".into()),
            ("MIDILowerLimit001", "1".into()),
            ("MIDIUpperLimit001", "127".into()),
        ] {
            self.entry(k, &v);
        }
    }

    /// An enclosure following controller `cc` on `channel` (1-16): value 0 closes the shutters,
    /// 127 opens them (`ControlChange`, the keys `GOMidiReceiverBase` reads for an enclosure).
    pub fn enclosure_receiver(&mut self, channel: u8, cc: u8) {
        self.entry("NumberOfMIDIEvents", "1");
        for (k, v) in [
            ("MIDIDevice001", String::new()),
            ("MIDIEventType001", "ControlChange".to_string()),
            ("MIDIChannel001", channel.to_string()),
            ("MIDIKey001", cc.to_string()),
            ("MIDILowerLimit001", "0".into()),
            ("MIDIUpperLimit001", "127".into()),
        ] {
            self.entry(k, &v);
        }
    }

    /// The file's bytes: UTF-8 with a BOM (GrandOrgue reads anything else as ISO-8859-1), LF
    /// line ends.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = String::from("\u{feff}");
        for h in &self.header {
            s.push_str(&format!("; {h}\n"));
        }
        for sec in &self.sections {
            if let Some(c) = &sec.comment {
                s.push_str(&format!("; {}\n", c.replace(['\n', '\r'], " ")));
            }
            s.push_str(&format!("[{}]\n", sec.name));
            for (k, v) in &sec.entries {
                s.push_str(&format!("{k}={v}\n"));
            }
        }
        s.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grandorgue::odf::Ini;

    #[test]
    fn round_trips_through_the_ini_reader() {
        let mut c = Cmb::new();
        c.header("written by a test");
        c.section("Organ", None);
        c.entry("ChurchName", "St. Märien");
        c.section("Manual001", Some("great".into()));
        c.manual_receiver(2);
        c.section("Stop001", None);
        c.receiver(&[Pattern::Note { channel: 16, key: 36, low: 0, high: 127 }]);
        let bytes = c.to_bytes();
        assert!(bytes.starts_with(&[0xEF, 0xBB, 0xBF]));
        let ini = Ini::parse(&Ini::decode(&bytes));
        assert_eq!(ini.get("Organ", "ChurchName"), Some("St. Märien"));
        assert_eq!(ini.get("Manual001", "MIDIChannel001"), Some("2"));
        assert_eq!(ini.get("Stop001", "MIDIEventType001"), Some("Note"));
        assert_eq!(ini.get("Stop001", "MIDIKey001"), Some("36"));
        assert_eq!(ini.get("Stop001", "MIDIDevice001"), Some(""));
        assert!(ini.get("Organ", "ODFHash").is_none());
    }
}
