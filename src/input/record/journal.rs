//! The journal of a recording: an append-only text file in the take folder, written as the
//! messages arrive, from which the takes are made at the end — or, after a crash, at the next
//! start.
//!
//! ```text
//! organ-journal 1 {"opened_unix_us":…,"source":"jack:console:out","organ_ref":"st-marys",…}
//! 1234567 9F 24 7F
//! 1302114 91 3C 50
//! end
//! ```
//!
//! The first line holds everything needed to make the takes again (the organ definition's text
//! itself, so a recovery reads the messages as they were recorded even if the file changed
//! since); then one line per message: its time on the source's clock (µs) and its bytes. A line
//! cut short by a crash is ignored. `end` is written once the takes are safely written, just
//! before the journal is removed.
//!
//! Durability: every message goes to the operating system as soon as the channel is drained
//! (milliseconds), so a killed process loses nothing the OS had; the file is synced to disk at
//! least every [`SYNC_EVERY`] while messages come, and as soon as the console is quiet for
//! [`SYNC_QUIET`], so a power cut loses at most the last second.
//!
//! A running recorder holds an exclusive lock (`flock`) on its journal, so a second `organ
//! record` in the same folder never takes it for an unfinished one. The writer runs on its own
//! thread ([`write_loop`]); the rest on the control thread.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::write::Timebase;
use crate::input::{Received, split_messages};
use crate::midi::{HexBytes, Micros, parse_hex};

/// The first word of a journal, with its format version.
pub const MAGIC: &str = "organ-journal 1";
/// Journals are `organ-record-….journal` in the take folder.
pub const FILE_PREFIX: &str = "organ-record-";
pub const EXTENSION: &str = "journal";
/// The longest a written message waits before it is synced to disk.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);
/// A pause in the console's messages this long syncs at once.
pub const SYNC_QUIET: Duration = Duration::from_millis(100);

/// What a journal needs to be made into takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// The wall-clock time (µs since the Unix epoch) of the source's time zero.
    pub opened_unix_us: u64,
    /// The source, as opened (`jack:console:out`, `port:…`).
    pub source: String,
    /// How the takes' registration files name the organ (`organ = "…"`).
    pub organ_ref: String,
    /// Where the organ definition was read from, and its text.
    pub organ_source: String,
    pub organ_text: String,
    /// Split at silences of at least this long (µs).
    pub split_us: Option<u64>,
    pub timebase: Timebase,
    /// The takes' names begin with this.
    pub prefix: String,
}

/// A journal read back.
#[derive(Debug, Clone)]
pub struct Journal {
    pub header: Header,
    pub messages: Vec<Received>,
    /// Its takes were written already (`end`): only the file is left to remove.
    pub finished: bool,
    /// A line in the middle that could not be read (what came before it is kept).
    pub damaged: Option<String>,
}

/// Why a journal cannot be read.
#[derive(Debug)]
pub enum JournalError {
    Io(io::Error),
    /// Not a journal, or its first line is broken.
    BadHeader(String),
}

impl std::fmt::Display for JournalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JournalError::Io(e) => write!(f, "cannot read it: {e}"),
            JournalError::BadHeader(why) => write!(f, "not a journal of organ record ({why})"),
        }
    }
}

/// Creates a new journal in `dir`, locked, with its header written and synced. Returns the
/// path and the file (positioned at the end).
///
/// # Errors
/// The folder cannot be written.
pub fn create(dir: &Path, name: &str, header: &Header) -> io::Result<(PathBuf, File)> {
    let json = serde_json::to_string(header).map_err(io::Error::other)?;
    for n in 1..1000 {
        let path = dir.join(if n == 1 {
            format!("{FILE_PREFIX}{name}.{EXTENSION}")
        } else {
            format!("{FILE_PREFIX}{name}-{n}.{EXTENSION}")
        });
        let mut file = match OpenOptions::new().read(true).append(true).create_new(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        };
        if !try_lock(&file) {
            return Err(io::Error::other(format!("{}: cannot lock the new journal", path.display())));
        }
        writeln!(file, "{MAGIC} {json}")?;
        file.sync_all()?;
        super::write::sync_dir(dir);
        return Ok((path, file));
    }
    Err(io::Error::other(format!("{}: no free journal name", dir.display())))
}

/// Takes the journal's exclusive lock without waiting: `false` when another process holds it.
pub fn try_lock(file: &File) -> bool {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: flock(2) on a descriptor this `File` owns for the duration of the call.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        true
    }
}

/// The journals in `dir` that no running recorder holds, each opened and locked.
pub fn unfinished(dir: &Path) -> Vec<(PathBuf, File)> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut paths: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            name.starts_with(FILE_PREFIX) && name.ends_with(&format!(".{EXTENSION}")) && p.is_file()
        })
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| {
            let f = OpenOptions::new().read(true).append(true).open(&p).ok()?;
            try_lock(&f).then_some((p, f))
        })
        .collect()
}

/// Reads a journal: its header, then every complete message line.
///
/// # Errors
/// It cannot be read, or its first line is not a journal header.
pub fn read(path: &Path) -> Result<Journal, JournalError> {
    let bytes = std::fs::read(path).map_err(JournalError::Io)?;
    let text = String::from_utf8_lossy(&bytes);
    // Only lines ended by a newline are complete: a crash may cut the last one.
    let complete = match text.rfind('\n') {
        Some(i) => &text[..i],
        None => "",
    };
    let mut lines = complete.split('\n');
    let first = lines.next().unwrap_or("");
    let json = first
        .strip_prefix(MAGIC)
        .ok_or_else(|| JournalError::BadHeader(format!("it does not begin with \"{MAGIC}\"")))?;
    let header: Header = serde_json::from_str(json.trim()).map_err(|e| JournalError::BadHeader(e.to_string()))?;
    let mut journal = Journal { header, messages: Vec::new(), finished: false, damaged: None };
    for (i, line) in lines.enumerate() {
        if line == "end" {
            journal.finished = true;
            break;
        }
        match parse_line(line) {
            Some(r) => journal.messages.push(r),
            None => {
                journal.damaged = Some(format!("line {} cannot be read", i + 2));
                break;
            }
        }
    }
    Ok(journal)
}

fn parse_line(line: &str) -> Option<Received> {
    let (at, hex) = line.split_once(' ')?;
    let at: u64 = at.parse().ok()?;
    let bytes = parse_hex(hex).ok()?;
    // One whole message, as the input delivered it.
    match split_messages(&bytes).as_slice() {
        [m] if m.len() == bytes.len() => Some(Received { at: Micros(at), bytes: bytes.into() }),
        _ => None,
    }
}

/// Appends `end` (the takes are written), syncs, and removes the journal.
///
/// # Errors
/// It cannot be written or removed.
pub fn finish(path: &Path, file: &mut File) -> io::Result<()> {
    file.write_all(b"end\n")?;
    file.sync_all()?;
    std::fs::remove_file(path)?;
    if let Some(dir) = path.parent() {
        super::write::sync_dir(dir);
    }
    Ok(())
}

/// The writer thread: appends every message from `rx` to `file` until the channel closes or
/// `stop` is set and the channel is empty; calls `seen` for each message (the live status).
///
/// # Errors
/// A write or sync failed (disk full …); what was written before stays in the journal.
pub fn write_loop(
    file: File,
    rx: &crossbeam_channel::Receiver<Received>,
    stop: &AtomicBool,
    seen: &mut dyn FnMut(&Received),
) -> io::Result<u64> {
    let mut w = BufWriter::with_capacity(64 * 1024, file);
    let mut count = 0u64;
    let mut last_sync = Instant::now();
    let mut last_message = Instant::now();
    let mut dirty = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(r) => {
                write_line(&mut w, &r)?;
                seen(&r);
                count += 1;
                while let Ok(r) = rx.try_recv() {
                    write_line(&mut w, &r)?;
                    seen(&r);
                    count += 1;
                }
                // To the OS at once: a killed process loses nothing written.
                w.flush()?;
                dirty = true;
                last_message = Instant::now();
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if stop.load(Ordering::Acquire) {
                    break;
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
        if dirty && (last_sync.elapsed() >= SYNC_EVERY || last_message.elapsed() >= SYNC_QUIET) {
            w.get_ref().sync_data()?;
            last_sync = Instant::now();
            dirty = false;
        }
    }
    w.flush()?;
    w.get_ref().sync_data()?;
    Ok(count)
}

fn write_line(w: &mut impl Write, r: &Received) -> io::Result<()> {
    writeln!(w, "{} {}", r.at.0, HexBytes(&r.bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            opened_unix_us: 1_700_000_000_000_000,
            source: "jack:console:out".into(),
            organ_ref: "st-marys".into(),
            organ_source: "(built-in) organs/st-marys.toml".into(),
            organ_text: "name = \"x\"\n# \"quotes\" and\nnewlines".into(),
            split_us: Some(5_000_000),
            timebase: Timebase::default(),
            prefix: "take".into(),
        }
    }

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("organ-journal-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn written_as_it_comes_read_back_whole() {
        let d = dir("rw");
        let (path, file) = create(&d, "t", &header()).unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let msgs = vec![
            Received { at: Micros(10), bytes: vec![0x90, 60, 80].into() },
            Received { at: Micros(20), bytes: vec![0xF0, 0x43, 0x10, 0xF7].into() },
        ];
        for m in &msgs {
            tx.send(m.clone()).unwrap();
        }
        drop(tx);
        let stop = AtomicBool::new(false);
        let mut seen = 0;
        assert_eq!(write_loop(file, &rx, &stop, &mut |_| seen += 1).unwrap(), 2);
        assert_eq!(seen, 2);
        let j = read(&path).unwrap();
        assert_eq!(j.header, header());
        assert_eq!(j.messages, msgs);
        assert!(!j.finished && j.damaged.is_none());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_cut_last_line_is_ignored_a_broken_one_reported() {
        let d = dir("cut");
        let (path, mut file) = create(&d, "t", &header()).unwrap();
        file.write_all(b"100 90 3C 50\n200 80 3C 00\n300 90 3").unwrap();
        let j = read(&path).unwrap();
        assert_eq!(j.messages.len(), 2);
        assert!(j.damaged.is_none(), "a cut last line is what a crash leaves: not damage");
        file.write_all(b"C 50\nrubbish\n400 90 3C 50\n").unwrap();
        let j = read(&path).unwrap();
        assert_eq!(j.messages.len(), 3);
        assert_eq!(j.damaged.as_deref(), Some("line 5 cannot be read"));
        assert!(matches!(read(&d.join("nothing")), Err(JournalError::Io(_))));
        std::fs::write(d.join("x.journal"), "hello\n").unwrap();
        assert!(matches!(read(&d.join("x.journal")), Err(JournalError::BadHeader(_))));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_locked_journal_is_not_unfinished_and_end_removes_it() {
        let d = dir("lock");
        let (path, mut file) = create(&d, "t", &header()).unwrap();
        #[cfg(unix)]
        assert!(unfinished(&d).is_empty(), "its recorder still holds it");
        let path2 = {
            let (p, _f) = create(&d, "t", &header()).unwrap();
            p
        };
        assert_ne!(path, path2, "a second journal of the same second gets its own name");
        let found: Vec<PathBuf> = unfinished(&d).into_iter().map(|x| x.0).collect();
        #[cfg(unix)]
        assert_eq!(found, vec![path2.clone()], "only the one whose recorder is gone");
        finish(&path, &mut file).unwrap();
        assert!(!path.exists());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
