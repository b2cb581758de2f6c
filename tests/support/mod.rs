//! The test harness for the JACK end-to-end tests: processes (JACK dummy server, Xvfb,
//! GrandOrgue), a generated test organ, a JACK recorder and the audio analysis, and a scripted
//! organ console on JACK (`organ learn`, `monitor`, `--verify`, `record`), and performances for
//! the recording tests.
#![allow(dead_code)]

pub mod analysis;
#[cfg(feature = "jack")]
pub mod console;
pub mod performance;
#[cfg(feature = "jack")]
pub mod procs;
#[cfg(feature = "jack")]
pub mod recorder;
pub mod test_organ;

/// A scratch directory under the system temp dir, removed on drop unless `keep` was called, the
/// test failed, or `ORGAN_TEST_KEEP` is set (for a look at the generated files).
pub struct Scratch {
    pub path: std::path::PathBuf,
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
