//! Child processes of the GrandOrgue end-to-end test: a JACK server with the dummy backend, Xvfb
//! and GrandOrgue. Every wait has a timeout; every child is killed by its own pid on drop.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How many JACK servers of ours can run at once on one machine (one per test process). A few
/// fixed names, not one per pid: jack2 frees a server's slot in its registry (8 slots) on a clean
/// exit, but one killed (`SIGKILL`, as `play_jack` does on purpose) keeps its slot until a server
/// of the same name registers again; reused names bound what such kills leave behind.
const SERVER_SLOTS: u32 = 4;

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

/// Where the cross-process locks live: beside JACK's own files (`/dev/shm`, its tmpdir), which are
/// shared by every checkout and every `TMPDIR`, else the temporary directory.
fn lock_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() }
}

/// An exclusive `flock(2)` on a file. The kernel drops it when the holding process dies, so no lock
/// outlives a killed test run; children do not inherit it (the file is opened close-on-exec).
struct FileLock(#[allow(dead_code)] std::fs::File);

impl FileLock {
    fn try_acquire(path: &Path) -> Option<FileLock> {
        use std::os::fd::AsRawFd;
        let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).ok()?;
        // SAFETY: flock(2) on a descriptor this function owns; no memory is passed.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        (r == 0).then_some(FileLock(f))
    }

    fn acquire(path: &Path, timeout: Duration) -> Result<FileLock, String> {
        wait_for(timeout, || FileLock::try_acquire(path))
            .ok_or_else(|| format!("another test run holds {} for over {timeout:?}", path.display()))
    }
}

/// This user's lock files of `what` (JACK's names are per user).
fn lock_path(what: &str) -> PathBuf {
    // SAFETY: getuid(2) cannot fail and touches no memory.
    let uid = unsafe { libc::getuid() };
    lock_dir().join(format!("organ-e2e-{uid}-{what}.lock"))
}

/// The name of this test process's JACK server, `organ-e2e-N`: the first of [`SERVER_SLOTS`]
/// names that no other live process holds (an flock held until this process exits). Two test
/// runs at once (two checkouts, CI beside a developer) so never join each other's server. Waits
/// up to 10 minutes for a free name; panics with the reason after that.
pub fn server() -> &'static str {
    static NAME: std::sync::OnceLock<(String, FileLock)> = std::sync::OnceLock::new();
    let (name, _held) = NAME.get_or_init(|| {
        let claim = || {
            (1..=SERVER_SLOTS)
                .find_map(|n| Some((format!("organ-e2e-{n}"), FileLock::try_acquire(&lock_path(&n.to_string()))?)))
        };
        wait_for(Duration::from_secs(600), claim).unwrap_or_else(|| {
            panic!(
                "all {SERVER_SLOTS} JACK test server names are held by other test runs (locks {})",
                lock_path("N").display()
            )
        })
    });
    name
}

/// [`server`] wherever a name is taken as a value: `.env("JACK_DEFAULT_SERVER", SERVER)`,
/// `format!("{SERVER}")` (what the fixed name `"organ-e2e"` was used as).
pub const SERVER: ServerName = ServerName;

/// See [`SERVER`].
#[derive(Debug, Clone, Copy)]
pub struct ServerName;

impl std::fmt::Display for ServerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(server())
    }
}

impl AsRef<std::ffi::OsStr> for ServerName {
    fn as_ref(&self) -> &std::ffi::OsStr {
        server().as_ref()
    }
}

/// Points this process's JACK clients, and the children it starts, at [`server`] (once; later
/// calls do nothing). Call it with the [`RunLock`] held, before the test opens JACK clients.
pub fn use_server() {
    let name = server();
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: set once, with the run lock held, before any JACK client of this process opens; the
    // JACK tests of this process read no other environment variable meanwhile, and the other tests
    // of the binary do not read it.
    ONCE.call_once(|| unsafe { std::env::set_var("JACK_DEFAULT_SERVER", name) });
}

/// One JACK test at a time in this process (they share its server name [`server`]): held for a
/// whole test. Other processes have their own server and do not wait for it.
pub struct RunLock(#[allow(dead_code)] std::sync::MutexGuard<'static, ()>);

impl RunLock {
    pub fn acquire(timeout: Duration) -> Result<RunLock, String> {
        static RUN: std::sync::Mutex<()> = std::sync::Mutex::new(());
        // A test that panicked while holding it stopped its server on the way out (drop order).
        let guard = wait_for(timeout, || match RUN.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        });
        guard.map(RunLock).ok_or_else(|| format!("another JACK test of this process ran for over {timeout:?}"))
    }
}

fn jackd_pids() -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else { return Vec::new() };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "jackd"))
        .collect()
}

/// Whether any process has JACK's shared registry mapped (a JACK client or server, in this test
/// process or another test run). Such a process keeps using that registry: if it were removed, a
/// new server would create another one that process cannot see. A process whose memory map cannot
/// be read counts as mapping it.
fn registry_mapped() -> bool {
    let Ok(rd) = std::fs::read_dir("/proc") else { return true };
    rd.flatten().filter(|e| e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))).any(|e| {
        match std::fs::read_to_string(e.path().join("maps")) {
            Ok(maps) => maps.contains("/jack-shm-registry"),
            Err(err) => err.kind() == std::io::ErrorKind::PermissionDenied,
        }
    })
}

/// Removes JACK shared-memory files left by a server that died: all of them (the registry too,
/// with the slots of killed servers) when no `jackd` runs and no process uses the registry, else
/// only those of `server`. Call it with the start lock held.
fn clean_stale_shm(server: &str) {
    let everything = jackd_pids().is_empty() && !registry_mapped();
    let Ok(rd) = std::fs::read_dir("/dev/shm") else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("jack") && (everything || name.contains(&format!("_{server}_"))) {
            let p = e.path();
            let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        }
    }
}

/// Serialises, across processes, what touches JACK's shared files outside a server: cleaning
/// them, and starting a server until it answers (a server starting creates the registry that a
/// cleaning elsewhere would remove). Held for seconds, not for a test.
fn start_lock() -> Result<FileLock, String> {
    FileLock::acquire(&lock_path("start"), Duration::from_secs(120))
}

/// A JACK server with the dummy backend, named [`server`]. [`Jackd::start`] points this process
/// and its children at it (`JACK_DEFAULT_SERVER`); hold the [`RunLock`] meanwhile.
pub struct Jackd {
    pub proc: Proc,
    pub log: PathBuf,
}

impl Jackd {
    pub fn start(dir: &Path) -> Result<Jackd, Unavailable> {
        use_server();
        let server = server();
        let _start = start_lock().map_err(Unavailable::Fail)?;
        // A leftover server of ours (a test run killed before it could stop it) would hold the name.
        if organ_server_running() {
            return Err(Unavailable::Fail(format!(
                "a JACK server named {server} is already running; stop it (it was left by an earlier run)"
            )));
        }
        clean_stale_shm(server);
        // Real-time scheduling keeps the dummy backend's cycles on time on a busy machine; where
        // it is not allowed, jackd may refuse to start, so try again without it.
        let mut last = String::new();
        for realtime in [true, false] {
            let log = dir.join(if realtime { "jackd.log" } else { "jackd-nonrt.log" });
            let out = std::fs::File::create(&log).map_err(|e| Unavailable::Fail(e.to_string()))?;
            let rt = if realtime { "-R" } else { "--no-realtime" };
            let mut cmd = Command::new("jackd");
            cmd.args(["-n", server, rt, "-d", "dummy", "-r", &RATE.to_string(), "-p", &PERIOD.to_string()])
                .env("JACK_NO_AUDIO_RESERVATION", "1")
                .stdin(Stdio::null())
                .stdout(out.try_clone().map_err(|e| Unavailable::Fail(e.to_string()))?)
                .stderr(out);
            stop_with_parent(&mut cmd);
            let mut j = Jackd { proc: Proc::spawn("jackd", &mut cmd).map_err(Unavailable::Fail)?, log };
            if wait_for(Duration::from_secs(10), organ_server_running_opt).is_some() {
                return Ok(j);
            }
            last = format!(
                "jackd ({rt}) did not come up within 10 s (exit status {:?}); log:\n{}",
                j.proc.exited(),
                std::fs::read_to_string(&j.log).unwrap_or_default()
            );
            j.proc.stop(Duration::from_secs(3));
            clean_stale_shm(server);
        }
        Err(Unavailable::Fail(last))
    }
}

/// Makes the child get `SIGTERM` when the thread that starts it ends, above all when the test
/// process is killed before it could stop the child: a server left running would hold its name
/// (and, killed later, its registry slot). `SIGTERM` lets jackd unregister itself.
fn stop_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: between fork and exec only async-signal-safe calls: prctl(2), getppid(2).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent died before prctl: nobody would stop this child.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(std::io::Error::other("the test process is gone"));
            }
            Ok(())
        })
    };
}

impl Jackd {
    /// Stops the server (clients first!) and removes the shared memory it leaves behind.
    pub fn stop(&mut self) {
        if self.proc.child.is_none() {
            return;
        }
        self.proc.stop(Duration::from_secs(3));
        // Without the start lock (another run holding it for minutes), leave the files: the
        // next start of this name removes them.
        if let Ok(_start) = start_lock() {
            clean_stale_shm(server());
        }
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
/// test server ([`server`]) and starts it, its log in `dir`.
pub fn start_jack(dir: &Path) -> Result<JackSession, Unavailable> {
    if which("jackd").is_none() {
        return Err(Unavailable::Skip("jackd not installed (Debian package jackd2)".into()));
    }
    if let Err(e) = jack::jack_sys::library() {
        return Err(Unavailable::Skip(format!("libjack cannot be loaded ({e}); install jackd2")));
    }
    let lock = RunLock::acquire(Duration::from_secs(600)).map_err(Unavailable::Fail)?;
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
                .env("JACK_DEFAULT_SERVER", server())
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
