//! A private tmux server with one pane, `svc`, for the tests of `organ service`'s terminal view:
//! keys in, the screen out. The server is killed on drop.

use std::time::{Duration, Instant};

/// The tmux server `-L NAME` (a name of the test's own, with its pid).
pub struct Tmux(pub String);

impl Tmux {
    /// Whether tmux is installed.
    pub fn installed() -> bool {
        std::process::Command::new("tmux").arg("-V").output().is_ok()
    }

    /// Runs `tmux -L NAME ARGS`.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("tmux").arg("-L").arg(&self.0).args(args).output().expect("tmux runs")
    }

    /// Starts `command` (through the shell) in the pane `svc`, `cols` × `rows`.
    pub fn start(name: String, cols: u16, rows: u16, command: &str) -> Tmux {
        let tmux = Tmux(name);
        let (x, y) = (cols.to_string(), rows.to_string());
        let started = tmux.run(&["new-session", "-d", "-s", "svc", "-x", &x, "-y", &y, command]);
        assert!(started.status.success(), "tmux: {}", String::from_utf8_lossy(&started.stderr));
        tmux
    }

    /// What the pane shows.
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "svc"]).stdout).into_owned()
    }

    /// Types `key` (a tmux key name: `Enter`, `Down`, `q`).
    pub fn keys(&self, key: &str) {
        let _ = self.run(&["send-keys", "-t", "svc", key]);
    }

    /// Waits (at most 30 s) until the screen satisfies `ok`; the screen then.
    pub fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(Instant::now() < end, "timed out waiting for {what}; the screen was:\n{s}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}
