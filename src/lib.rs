//! # organ — real-time MIDI pipe-organ playback
//!
//! The pipeline: a score (SSGGP MIDI file), an organ definition (TOML) and a registration (TOML)
//! are loaded and planned into one exact, sorted [`plan::Timeline`] of timed MIDI messages; the
//! real-time engine then only walks that array and hands each message to the outputs. A
//! [`session`] is the one control layer between the frontends and the engine.
//!
//! ```text
//! score.mid ─┐
//! organ.toml ├─► inputs ─► plan (Timeline) ─► session ─► engine thread ─► outputs
//! score.toml ┘   (pure, allocates, fails with good errors)  (real-time: walks a sorted array)
//! ```
//!
//! ## Threading model
//! - Loading and planning ([`inputs`], [`score`], [`organ`], [`registration`], [`plan`]) are
//!   pure functions on the control thread. Nothing in them touches clocks, ports or threads.
//! - The [`session`] runs on the control thread too (the frontend's loop polls it; other
//!   threads reach it through a `SessionHandle`): it opens and finishes the outputs, starts the
//!   engine, handles signals and panics.
//! - The [`engine`] runs on its own real-time thread: no allocation, locks, logging or files.
//!   [`output::Output::send`] runs there; slow transports hand over to their own worker.
//!
//! ## Modules
//! ARCHITECTURE.md (in the repository) says where things are and where new things go.
//! - [`midi`]: microseconds, channels and the stack-allocated short message.
//! - [`score`]: SMF loading (midly), the exact tempo map, bars and beats, parts.
//! - [`organ`]: organ definitions (serde + toml), with file:line:column errors.
//! - [`registration`]: the score's registration file and the hymn options (one parser).
//! - [`inputs`]: score + registration + organ + settings resolved from plain values.
//! - [`plan`]: arranging parts onto divisions, registration, key merging, hymn unrolling →
//!   `Timeline`.
//! - [`session`]: outputs + engine lifecycle + signals + `Progress`, shared by every frontend.
//! - [`engine`]: the real-time thread; [`output`]: where messages go (ports, files, BLE, JACK).
//! - [`play`] (`organ play`, `ports`, `panic`) and [`service`] (`organ service`): the terminal
//!   frontends, over the session; [`term`]: their raw mode and keys.
//! - [`selftest`]: `organ selftest`, the timing of an output measured before a service.
//! - [`app`]: the other commands (`plan`, `check`, `info`, `ble scan`, `grandorgue …`) and the
//!   command-level error.
//! - [`files`]: reading the user's files: regular files of bounded size only, remembered as
//!   inputs so that no output overwrites them.
//! - [`fuzzing`]: the fuzz targets' checks, shared by cargo-fuzz and the stable replay test.
//! - [`grandorgue`]: GrandOrgue settings (`.cmb`) written from an organ definition and an ODF.
//! - [`voice`]: the built-in organ voice (`--to wav:FILE`, `--to audio`).
//! - [`picture`]: the plan as a picture (`organ plan --format svg|html`).
//! - [`input`]: MIDI from the console (midir ports, JACK) on its own thread, timestamped on
//!   arrival; `organ monitor`, `organ learn` (and `--verify`), `organ ports`, and `organ record`
//!   (a journal written as it goes, takes made from it, recovered after a crash).

#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

/// `println!` that never panics: standard output may be a closed pipe (`organ plan … | head`),
/// a full disk (`>/dev/full`) or a terminal that went away, and none of these may abort a
/// performance before its keys are released. What cannot be written is dropped; commands whose
/// output *is* the product write through [`app::write_out`] instead, which reports the error.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that never panics (see [`out!`]): for messages, warnings and errors on stderr.
macro_rules! err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod app;
pub mod engine;
pub mod files;
pub mod fuzzing;
pub mod grandorgue;
pub mod input;
pub mod inputs;
pub mod midi;
pub mod organ;
pub mod output;
pub mod picture;
pub mod plan;
pub mod play;
pub mod registration;
pub mod score;
pub mod selftest;
pub mod service;
pub mod session;
pub mod term;
pub mod text;
pub mod voice;

/// When the program started (set first thing in `main`), for the start-up time report.
pub static PROCESS_START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
