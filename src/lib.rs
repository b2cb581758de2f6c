//! # organ — real-time MIDI pipe-organ playback
//!
//! The pipeline: a score (SSGGP MIDI file), an organ definition (TOML) and a registration (TOML)
//! are loaded and planned into one exact, sorted [`plan::Timeline`] of timed MIDI messages; the
//! real-time engine then only walks that array and hands each message to the outputs.
//!
//! ```text
//! score.mid ─┐
//! organ.toml ├─► score / organ ─► plan (Timeline) ─► engine thread ─► outputs
//! score.toml ┘   (pure, allocates, fails with good errors)  (real-time: walks a sorted array)
//! ```
//!
//! ## Threading model
//! Loading and planning ([`score`], [`organ`], [`plan`]) are pure functions that run on the
//! control thread. Nothing in them touches clocks, ports or threads.
//!
//! ## Modules
//! - [`midi`]: microseconds, channels and the stack-allocated short message.
//! - [`score`]: SMF loading (midly), the exact tempo map, bars and beats, parts.
//! - [`organ`]: organ definitions and registrations (serde + toml), with file:line:column errors.
//! - [`plan`]: arranging parts onto divisions, registration, key merging, hymn unrolling →
//!   `Timeline`.
//! - [`engine`]: the real-time thread; [`output`]: where messages go (ports, files, BLE, JACK).
//! - [`play`]: `organ play`, `ports` and `panic`: the control thread around the engine.
//! - [`service`]: `organ service`, the full-screen view for playing during a service.
//! - [`selftest`]: `organ selftest`, the timing of an output measured before a service.
//! - [`grandorgue`]: GrandOrgue settings (`.cmb`) written from an organ definition and an ODF.

pub mod app;
pub mod cli;
pub mod engine;
pub mod grandorgue;
pub mod midi;
pub mod organ;
pub mod output;
pub mod plan;
pub mod play;
pub mod score;
pub mod selftest;
pub mod service;
pub mod text;

/// When the program started (set first thing in `main`), for the start-up time report.
pub static PROCESS_START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
