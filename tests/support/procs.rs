//! Child processes of the GrandOrgue end-to-end test: a JACK server with the dummy backend, Xvfb
//! and GrandOrgue. Every wait has a timeout; every child is killed by its own pid on drop.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The JACK server name used by the tests. Fixed: JACK 1.9.21 runs out of registry slots when
/// every run uses a new name. Runs are serialised across processes by [`RunLock`].
pub const SERVER: &str = "organ-e2e";
/// Period in frames. 512 or 1024: shorter periods give xruns on a busy 2-core machine.
pub const PERIOD: u32 = 1024;
pub const RATE: u32 = 48_000;

/// Why the test cannot run here.
#[derive(Debug)]
pub enum Unavailable {
    Skip(String),
    Fail(String),
}

pub fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(cmd)).find(|p| p.is_file())
}

/// The commands the test needs, each with the Debian package that provides it.
pub const NEEDED: &[(&str, &str)] =
    &[("jackd", "jackd2"), ("Xvfb", "xvfb"), ("GrandOrgue", "grandorgue"), ("xwininfo", "x11-utils")];

/// `Err(reason)` naming the missing commands and their packages.
pub fn check_tools() -> Result<(), String> {
    let missing: Vec<String> =
        NEEDED.iter().filter(|(c, _)| which(c).is_none()).map(|(c, p)| format!("{c} (Debian package {p})")).collect();
    if missing.is_empty() { Ok(()) } else { Err(format!("not installed: {}", missing.join(", "))) }
}

/// A child killed (SIGTERM, then SIGKILL) by pid on drop.
pub struct Proc {
    pub name: &'static str,
    child: Option<Child>,
}

/// Sends a signal to a child by pid (no `kill` command needed: procps may be absent).
fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child's, not
        // yet reaped (callers hold its `Child`).
        unsafe { libc::kill(pid, sig) };
    }
}

impl Proc {
    pub fn spawn(name: &'static str, cmd: &mut Command) -> Result<Proc, String> {
        let child = cmd.spawn().map_err(|e| format!("cannot start {name}: {e}"))?;
        Ok(Proc { name, child: Some(child) })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// `Some(status)` if it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Sends a signal (`libc::SIGINT`, …) by pid.
    pub fn signal(&self, sig: libc::c_int) {
        if let Some(c) = &self.child {
            signal(c.id(), sig);
        }
    }

    /// Waits up to `timeout` for it to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        wait_for(timeout, || self.exited())
    }

    /// Stops it: SIGTERM, up to `grace`, then SIGKILL.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut c) = self.child.take() else { return };
        if c.try_wait().ok().flatten().is_none() {
            signal(c.id(), libc::SIGTERM);
            let end = Instant::now() + grace;
            while Instant::now() < end && c.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            if c.try_wait().ok().flatten().is_none() {
                signal(c.id(), libc::SIGKILL);
            }
        }
        let _ = c.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(2));
    }
}

/// Polls `f` every 50 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An exclusive lock on the test's JACK server name across processes (other test runs on the
/// same machine): a directory created atomically, holding the owner's pid; a lock whose owner
/// has died is taken over. Released on drop.
pub struct RunLock(PathBuf);

impl RunLock {
    pub fn acquire(timeout: Duration) -> Result<RunLock, String> {
        let dir = std::env::temp_dir().join("organ-grandorgue-e2e.lock");
        let me = std::process::id().to_string();
        wait_for(timeout, || {
            if std::fs::create_dir(&dir).is_ok() {
                std::fs::write(dir.join("pid"), &me).ok()?;
                return Some(());
            }
            let owner = std::fs::read_to_string(dir.join("pid")).unwrap_or_default();
            if !owner.trim().is_empty() && !Path::new(&format!("/proc/{}", owner.trim())).exists() {
                let _ = std::fs::remove_dir_all(&dir); // its owner died
            }
            None
        })
        .ok_or_else(|| format!("another GrandOrgue test run holds {} for over {timeout:?}", dir.display()))?;
        Ok(RunLock(dir))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn jackd_pids() -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else { return Vec::new() };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "jackd"))
        .collect()
}

/// Whether this process has used libjack (then the shared registry must stay: libjack keeps
/// it mapped, and a new server would otherwise create one this process cannot see).
static USED_JACK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Removes JACK shared-memory files left by a server that died: all of them when no `jackd`
/// runs and this process has not used JACK yet, else only those of our server's name.
fn clean_stale_shm() {
    let everything = jackd_pids().is_empty() && !USED_JACK.load(std::sync::atomic::Ordering::Relaxed);
    let Ok(rd) = std::fs::read_dir("/dev/shm") else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("jack") && (everything || name.contains(&format!("_{SERVER}_"))) {
            let p = e.path();
            let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        }
    }
}

/// A JACK server with the dummy backend, named [`SERVER`]. Clients must set
/// `JACK_DEFAULT_SERVER` (the test process sets it for itself and its children).
pub struct Jackd {
    pub proc: Proc,
    pub log: PathBuf,
}

impl Jackd {
    pub fn start(dir: &Path) -> Result<Jackd, Unavailable> {
        // A leftover server of ours (a killed test run) would hold the name.
        if organ_server_running() {
            return Err(Unavailable::Fail(format!(
                "a JACK server named {SERVER} is already running; stop it (it was left by an earlier run)"
            )));
        }
        clean_stale_shm();
        // Real-time scheduling keeps the dummy backend's cycles on time on a busy machine; where
        // it is not allowed, jackd may refuse to start, so try again without it.
        let mut last = String::new();
        for realtime in [true, false] {
            let log = dir.join(if realtime { "jackd.log" } else { "jackd-nonrt.log" });
            let out = std::fs::File::create(&log).map_err(|e| Unavailable::Fail(e.to_string()))?;
            let rt = if realtime { "-R" } else { "--no-realtime" };
            let proc = Proc::spawn(
                "jackd",
                Command::new("jackd")
                    .args(["-n", SERVER, rt, "-d", "dummy", "-r", &RATE.to_string(), "-p", &PERIOD.to_string()])
                    .env("JACK_NO_AUDIO_RESERVATION", "1")
                    .stdin(Stdio::null())
                    .stdout(out.try_clone().map_err(|e| Unavailable::Fail(e.to_string()))?)
                    .stderr(out),
            )
            .map_err(Unavailable::Fail)?;
            let mut j = Jackd { proc, log };
            if wait_for(Duration::from_secs(10), organ_server_running_opt).is_some() {
                return Ok(j);
            }
            last = format!(
                "jackd ({rt}) did not come up within 10 s (exit status {:?}); log:\n{}",
                j.proc.exited(),
                std::fs::read_to_string(&j.log).unwrap_or_default()
            );
            j.stop();
        }
        Err(Unavailable::Fail(last))
    }
}

impl Jackd {
    /// Stops the server (clients first!) and removes the shared memory it leaves behind.
    pub fn stop(&mut self) {
        self.proc.stop(Duration::from_secs(3));
        clean_stale_shm();
    }
}

impl Drop for Jackd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A JACK end-to-end test's server and its run lock (the server stops first).
pub struct JackSession {
    pub jackd: Jackd,
    _lock: RunLock,
}

/// The start of a JACK end-to-end test: checks that `jackd` and libjack are here (`Skip` with
/// the package to install), takes the run lock, points this process and its children at the
/// test server ([`SERVER`]) and starts it, its log in `dir`.
pub fn start_jack(dir: &Path) -> Result<JackSession, Unavailable> {
    if which("jackd").is_none() {
        return Err(Unavailable::Skip("jackd not installed (Debian package jackd2)".into()));
    }
    if let Err(e) = jack::jack_sys::library() {
        return Err(Unavailable::Skip(format!("libjack cannot be loaded ({e}); install jackd2")));
    }
    let lock = RunLock::acquire(Duration::from_secs(600)).map_err(Unavailable::Fail)?;
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: set once, with the run lock held, before the test opens JACK clients; the tests
    // using this read no other environment variable meanwhile.
    ONCE.call_once(|| unsafe { std::env::set_var("JACK_DEFAULT_SERVER", SERVER) });
    Ok(JackSession { jackd: Jackd::start(dir)?, _lock: lock })
}

fn organ_server_running_opt() -> Option<()> {
    organ_server_running().then_some(())
}

/// Whether our server answers (a client can be opened without starting one).
pub fn organ_server_running() -> bool {
    if jack::jack_sys::library().is_err() {
        return false;
    }
    USED_JACK.store(true, std::sync::atomic::Ordering::Relaxed);
    jack::set_logger(jack::LoggerType::None);
    jack::Client::new("organ-e2e-probe", jack::ClientOptions::NO_START_SERVER).is_ok()
}

/// An X server without a screen. The display number is chosen by Xvfb (`-displayfd`).
pub struct Xvfb {
    pub proc: Proc,
    pub display: String,
}

impl Xvfb {
    pub fn start() -> Result<Xvfb, String> {
        let mut child = Command::new("Xvfb")
            .args(["-displayfd", "1", "-screen", "0", "1280x1024x24", "-nolisten", "tcp"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start Xvfb: {e}"))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let proc = Proc { name: "Xvfb", child: Some(child) };
        let line = rx.recv_timeout(Duration::from_secs(10)).map_err(|_| "Xvfb did not report a display within 10 s")?;
        let n: u32 = line.trim().parse().map_err(|_| format!("Xvfb reported {line:?} instead of a display number"))?;
        Ok(Xvfb { proc, display: format!(":{n}") })
    }

    /// The titles of all windows (`xwininfo -root -tree`), for diagnostics and dialog checks.
    pub fn window_titles(&self) -> Vec<String> {
        let out = Command::new("xwininfo").args(["-root", "-tree"]).env("DISPLAY", &self.display).output();
        let Ok(out) = out else { return vec!["(xwininfo failed)".into()] };
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let a = l.find('"')?;
                let b = l[a + 1..].find('"')? + a + 1;
                Some(l[a + 1..b].to_string())
            })
            .collect()
    }
}

/// GrandOrgue's global configuration for the test: JACK audio and JACK MIDI only, every MIDI
/// input present at start-up added, no start-up dialogs. `SamplesPerBuffer` must equal the JACK
/// period, or GrandOrgue opens a modal dialog.
pub fn grandorgue_config(period: u32) -> String {
    format!(
        "[General]\nSampleRate={RATE}\nSamplesPerBuffer={period}\nLoadLastFile=N\nManageCache=N\nVolume=0\n\
Concurrency=1\nReleaseConcurrency=1\nLoadConcurrency=1\n\
[AudioGroups]\nCount=1\nName001=Default audio group\n\
[AudioDevices]\nCount=1\nDevice001Name=Jack: Native Output\nDevice001ChannelCount=2\nDevice001Latency=50\n\
Device001Channel001GroupCount=1\nDevice001Channel001Group001Name=Default audio group\n\
Device001Channel001Group001Left=0.000000\nDevice001Channel001Group001Right=-121.000000\n\
Device001Channel002GroupCount=1\nDevice001Channel002Group001Name=Default audio group\n\
Device001Channel002Group001Left=-121.000000\nDevice001Channel002Group001Right=0.000000\n\
[SoundPorts]\nJack.Enabled=Y\nPortAudio.Enabled=N\nRtAudio.Enabled=N\nRtAudio.alsa.Enabled=N\n\
RtAudio.jack.Enabled=N\nRtAudio.pulse.Enabled=N\n\
[MidiPorts]\nRt.Enabled=Y\nRt.alsa.Enabled=N\nRt.jack.Enabled=Y\n\
[MIDIIn]\nCount=0\nIsToAutoAddMidi=Y\nIsToCheckMidiOnStart=N\n\
[MIDIOut]\nCount=0\n"
    )
}

/// GrandOrgue with a fresh HOME, on `display`, loading `odf` at start-up.
pub struct GrandOrgue {
    pub proc: Proc,
    pub log: PathBuf,
    pub home: PathBuf,
}

impl GrandOrgue {
    pub fn start(dir: &Path, display: &str, odf: &Path) -> Result<GrandOrgue, String> {
        let home = dir.join("home");
        std::fs::create_dir_all(&home).map_err(|e| e.to_string())?;
        std::fs::write(home.join("GrandOrgueConfig"), grandorgue_config(PERIOD)).map_err(|e| e.to_string())?;
        let log = dir.join("grandorgue.log");
        let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        // GrandOrgue renders in ordinary threads; on a machine busy with other work they miss
        // JACK's deadlines (xruns). Run it at the lowest real-time priority (below jackd's), or
        // at least with a higher nice level, where that is allowed.
        let allowed = |args: &[&str]| Command::new(args[0]).args(&args[1..]).status().is_ok_and(|s| s.success());
        let mut cmd = if allowed(&["chrt", "-r", "1", "true"]) {
            let mut c = Command::new("chrt");
            c.args(["-r", "1", "GrandOrgue"]);
            c
        } else if allowed(&["nice", "-n", "-10", "true"]) {
            let mut c = Command::new("nice");
            c.args(["-n", "-10", "GrandOrgue"]);
            c
        } else {
            Command::new("GrandOrgue")
        };
        let proc = Proc::spawn(
            "GrandOrgue",
            cmd.arg(odf)
                .env("HOME", &home)
                .env("DISPLAY", display)
                .env("NO_AT_BRIDGE", "1")
                .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
                .env("JACK_DEFAULT_SERVER", SERVER)
                .env_remove("XDG_CONFIG_HOME")
                .env_remove("XDG_DATA_HOME")
                .stdin(Stdio::null())
                .stdout(out.try_clone().map_err(|e| e.to_string())?)
                .stderr(out),
        )?;
        Ok(GrandOrgue { proc, log, home })
    }

    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// Prints a line to the real stderr (not captured by the test harness), so that SKIPPED and the
/// measured figures show even under `cargo test -q`.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}
