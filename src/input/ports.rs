//! `organ ports`: the MIDI ports `organ` can play to (`--to port:…`) and listen to
//! (`--from port:…`), and, when a JACK server runs, the JACK MIDI ports of other programs
//! (`--to jack:…`, `--from jack:…`). Runs on the control thread.

use super::{ConsoleError, printable};

fn section(out: &mut String, title: &str, ports: &[(usize, String)], empty: &str) {
    out.push_str(title);
    out.push('\n');
    if ports.is_empty() {
        out.push_str(&format!("  ({empty})\n"));
    }
    for (i, n) in ports {
        out.push_str(&format!("  {i}: {}\n", printable(n)));
    }
}

/// The listing, or why there is nothing to list.
///
/// # Errors
/// No MIDI port system and no JACK server: nothing can be listed.
pub fn report() -> Result<String, ConsoleError> {
    let mut out = String::new();
    let system = match (crate::output::port::list(), super::port::list()) {
        (Ok(outs), Ok(ins)) => {
            section(
                &mut out,
                "MIDI outputs (--to port:NAME or port:N):",
                &outs,
                "none: is the interface plugged in and switched on?",
            );
            section(
                &mut out,
                "MIDI inputs (--from port:NAME or port:N):",
                &ins,
                "none: is the console's MIDI cable plugged in?",
            );
            None
        }
        (Err(e), _) => Some(e.to_string()),
        (_, Err(e)) => Some(e.to_string()),
    };
    let jack = jack_ports();
    if let Some((outs, ins)) = &jack {
        let numbered = |v: &[String]| v.iter().cloned().enumerate().collect::<Vec<_>>();
        section(&mut out, "JACK MIDI outputs of other programs (--from jack:PORT):", &numbered(outs), "none");
        section(&mut out, "JACK MIDI inputs of other programs (--to jack:PORT):", &numbered(ins), "none");
    }
    match (system, jack) {
        (Some(why), None) => Err(ConsoleError::Usage(why)),
        (Some(why), Some(_)) => Ok(format!("{out}(no MIDI ports: {why})\n")),
        (None, _) => Ok(out),
    }
}

#[cfg(feature = "jack")]
fn jack_ports() -> Option<(Vec<String>, Vec<String>)> {
    super::jack::midi_ports()
}

#[cfg(not(feature = "jack"))]
fn jack_ports() -> Option<(Vec<String>, Vec<String>)> {
    None
}

/// `organ ports`.
///
/// # Errors
/// Nothing to list (the message says why).
pub fn cmd_ports() -> Result<i32, ConsoleError> {
    let report = report()?;
    // A closed pipe (`organ ports | head`) is not an error; a full disk is (exit status 2).
    crate::app::write_out(|o| o.write_all(report.as_bytes())).map_err(ConsoleError::Output)?;
    Ok(0)
}
