//! The integration test binary: the library and the real `organ` binary against the corpus in
//! tests/data/ and against small fixtures built here with midly.
//!
//! - [`corpus`]: every corpus file loads with note times equal to mido's (±1 µs) and to an
//!   independent tempo-map computation, and plans without a broken invariant.
//! - [`tempo`]: exactness over two hours of odd tempi, SMPTE divisions.
//! - [`damaged`]: damaged files are refused with the right error and never panic.
//! - [`plan_pin`]: `organ plan` byte for byte against golden files (every score, a few option
//!   combinations); regenerate with `ORGAN_PIN_REGENERATE=1` when a change is intended.
//! - [`planner`]: planner behaviours with hand-computed expectations.
//! - [`cli`]: the binary (jsonl contract, exit codes, one-line errors).
//! - [`check`]: `organ check` as an organist meets it: the shipped files pass, a silent manual
//!   fails, `play` warns the same, a toggle console simulated from the messages sent.
//! - [`props`]: property tests of the planner invariants and of the loader on mutated input.
//! - [`hostile`]: hostile input through the binary (special and oversize files, key-striking
//!   organ files, records aimed at inputs or through links, escape sequences, absurd numbers),
//!   and the record after SIGKILL and on a full disk, read back with mido.
//! - [`fuzz`]: the fuzz targets (score loader, organ and registration TOML, BLE decoder) as a
//!   bounded corpus-and-mutation replay on stable Rust.
//! - [`play`]: `organ play`/`panic`/`ports` through the binary: file output equals the plan,
//!   signals release every key, missing hardware is one clear line.
//! - [`record`]: a plan fed to the recorder comes back from its take's plan, whole and split.
//! - [`hymn_cli`]: the hymn flags of `organ plan` and `organ play`.
//! - [`service`]: `organ service` in a real pseudo-terminal (tmux).
//! - [`signals`]: losing the terminal (tmux closed: SIGHUP, or EIO alone) during `organ play`
//!   and `organ service`, Ctrl-Z/`fg`/Ctrl-C as keys under a job-control shell, closed and full
//!   pipes. (Every signal on the wire, with a JACK client as the organ: tests/signals.rs.)
//! - [`remote`]: `organ service --remote`: its security through the real server, a real
//!   Chromium driving the phone page, and a request from another network namespace.
//! - [`house`]: the house rules of ARCHITECTURE.md (no import cycle, no overlong function).
//! - [`voice`]: the built-in organ voice rendered to WAV and analysed (pitches, footages,
//!   couplers, registration changes, silence, no clipping).
//! - [`picture`]: `organ plan --format svg|html` parsed as XML (lanes, stop rows, markers).
//!
//! The harness is tests/support/, shared with tests/ble.rs, tests/console.rs,
//! tests/grandorgue.rs and tests/record.rs.

mod check;
mod cli;
mod corpus;
mod damaged;
mod fuzz;
mod hostile;
mod house;
mod hymn_cli;
mod picture;
mod plan_pin;
mod planner;
mod play;
mod props;
mod record;
#[cfg(feature = "remote")]
mod remote;
mod service;
mod signals;
#[path = "../support/mod.rs"]
mod support;
mod tempo;
mod voice;
