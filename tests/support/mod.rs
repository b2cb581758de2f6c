//! The test harness, shared by every integration test binary (`tests/integration/`, and
//! `tests/ble.rs`, `tests/console.rs`, `tests/grandorgue.rs`, `tests/record.rs` and
//! `tests/signals.rs`, which need a process of their own: a private D-Bus, a JACK server named
//! through the environment).
//!
//! - here: paths, fresh scratch folders, running the real `organ` binary;
//! - [`organs`]: St Mary's and the small test organ the planner tests share;
//! - [`smf`]: writing MIDI fixtures with midly; [`reference`]: the corpus and what an
//!   independent reader (mido) found in it; [`plans`]: the one checker of plan invariants;
//!   [`performance`]: performances for the recording tests;
//! - [`bluez`]: a simulated BlueZ on a private D-Bus; [`procs`], [`recorder`], [`test_organ`],
//!   [`analysis`]: JACK, Xvfb and GrandOrgue processes, a JACK recorder, a generated GrandOrgue
//!   organ, and audio analysis for the GrandOrgue end-to-end test; [`console`]: a scripted
//!   organ console on JACK (`organ learn`, `monitor`, `--verify`, `record`); [`web`]: HTTP,
//!   WebSocket and WebDriver clients, and `organ service --remote` without a terminal; [`tmux`]:
//!   a private tmux server for the tests of `organ service`'s terminal view.
#![allow(dead_code, unused_imports)] // each test binary uses a different part

pub mod analysis;
pub mod bluez;
#[cfg(feature = "jack")]
pub mod console;
pub mod organs;
pub mod performance;
pub mod plans;
#[cfg(feature = "jack")]
pub mod procs;
#[cfg(feature = "jack")]
pub mod recorder;
pub mod reference;
pub mod smf;
pub mod test_organ;
pub mod tmux;
pub mod web;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use organs::{SYSEX_CANCEL, TestOrgan, st_marys, st_marys_path};
pub use plans::*;
pub use reference::*;
pub use smf::*;

// --- paths --------------------------------------------------------------------------------------

pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn data_dir() -> PathBuf {
    repo_dir().join("tests/data")
}

/// A fresh folder for files a test writes (inside target/, by test name, emptied first so
/// nothing from an earlier run can pass for this run's output).
pub fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("organ-it").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// A scratch directory under the system temp dir, removed on drop unless `keep` was called, the
/// test failed, or `ORGAN_TEST_KEEP` is set (for a look at the generated files).
pub struct Scratch {
    pub path: PathBuf,
    keep: bool,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "organ-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create scratch dir");
        Scratch { path, keep: false }
    }

    /// Keep the directory (for a failed test's post-mortem).
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("(test files kept in {})", self.path.display());
        } else if !self.keep && std::env::var_os("ORGAN_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

// --- the binary ---------------------------------------------------------------------------------

/// An empty configuration folder, so that no organ of the user's is found.
fn empty_config_home() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| scratch("xdg"))
}

/// `organ ARGS` to run in the repository directory (so `--organ st-marys` finds organs/), with
/// no user configuration and no backtraces, and Ctrl-C as from a terminal
/// ([`ctrl_c_as_from_a_terminal`]).
pub fn organ_command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_organ"));
    c.args(args).current_dir(repo_dir()).env_remove("RUST_BACKTRACE").env("XDG_CONFIG_HOME", empty_config_home());
    ctrl_c_as_from_a_terminal(&mut c);
    c
}

/// Starts the child with SIGINT and SIGQUIT at their default action, as from a terminal. A
/// shell script that runs the tests in the background (`cargo test … &` without job control)
/// starts them with those two ignored, and `organ` rightly leaves a signal that was ignored at
/// start as it was: every test that sends a Ctrl-C would see it ignored, and fail for a reason
/// of its caller's.
pub fn ctrl_c_as_from_a_terminal(c: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: signal(2) is async-signal-safe, and the closure touches nothing else.
    unsafe {
        c.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGQUIT, libc::SIG_DFL);
            Ok(())
        });
    }
}

/// Runs `organ ARGS` (see [`organ_command`]).
pub fn organ_bin(args: &[&str]) -> Output {
    organ_command(args).output().expect("run the organ binary")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
