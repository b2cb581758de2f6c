//! Reading the user's files safely: every score, organ definition, registration, amen, order of
//! service and GrandOrgue file `organ` reads goes through [`read_user_file`].
//!
//! - **Regular files only.** The file is opened without blocking (`O_NONBLOCK`, so a FIFO cannot
//!   hang the open) and checked with `fstat` on the open descriptor: a directory, a FIFO, a
//!   device (`/dev/zero`, `/dev/urandom`) or a socket is a one-line error naming the file.
//! - **Bounded size.** Each kind of file has a documented limit ([`FileKind::limit`]); a larger
//!   file is refused before a byte is read, and the read itself goes through
//!   `take(limit + 1)`, so a file that grows underneath cannot get past the limit either.
//! - **Inputs are remembered.** Every file read is noted (device and inode) for the rest of the
//!   process, so that an output can refuse to overwrite an input ([`input_named`]): `--to
//!   file:` naming the score must not replace the score.
//!
//! And writing them: a file `organ` writes (a record, GrandOrgue settings) replaces `PATH` only
//! when [`check_replaceable`] allows it (not a symbolic link, not a special file, not an input),
//! and is written as a new file beside it ([`create_beside`]: `O_CREAT | O_EXCL | O_NOFOLLOW`)
//! and renamed into place ([`rename_into_place`]), so nothing is ever written through a link.
//!
//! Runs on the control thread only (it reads files and takes a lock); never on the engine thread.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;

/// What a file is for: its name in messages and its size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A MIDI score (also an amen file).
    Score,
    /// An organ definition (TOML).
    Organ,
    /// A registration file (TOML).
    Registration,
    /// An order of service (TOML).
    Order,
    /// A GrandOrgue organ definition (`.organ`).
    Odf,
    /// GrandOrgue settings (`.cmb`), read to see whether `organ` wrote it.
    GrandOrgueSettings,
    /// A GrandOrgue organ package (`.orgue`, a ZIP with the samples): opened, never read whole.
    OrganPackage,
}

const MIB: u64 = 1 << 20;

impl FileKind {
    /// The largest file of this kind that is read (documented in README, "Limits").
    pub const fn limit(self) -> u64 {
        match self {
            // The 1,000,000-note benchmark file is about 9 MB: a real score is a few hundred KB.
            FileKind::Score => 32 * MIB,
            // Hand-written TOML: a large organ definition is tens of KB.
            FileKind::Organ | FileKind::Registration | FileKind::Order => MIB,
            // Sample-set organ definitions from GrandOrgue can run to tens of MB.
            FileKind::Odf | FileKind::GrandOrgueSettings => 64 * MIB,
            // Gigabytes of samples; only its directory and one ODF are read (the package reader
            // bounds those).
            FileKind::OrganPackage => u64::MAX,
        }
    }

    /// The noun with its article: "a MIDI score", "an organ definition", …
    pub fn a_noun(self) -> String {
        let n = self.noun();
        let article = if n.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
        format!("{article} {n}")
    }

    /// What the file is, for messages: "MIDI score", "organ definition", …
    pub const fn noun(self) -> &'static str {
        match self {
            FileKind::Score => "MIDI score",
            FileKind::Organ => "organ definition",
            FileKind::Registration => "registration file",
            FileKind::Order => "order of service",
            FileKind::Odf => "GrandOrgue organ definition",
            FileKind::GrandOrgueSettings => "GrandOrgue settings file",
            FileKind::OrganPackage => "GrandOrgue organ package",
        }
    }
}

/// Why a file was not read. `Display` is one line without the file name ([`FileError`] adds it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileProblem {
    /// The operating system's error (not found, permission denied, …).
    Io(String),
    /// Not a regular file: what it is instead ("a directory", "a FIFO (named pipe)", …).
    NotRegular { what: &'static str, kind: FileKind },
    /// Larger than the kind's limit (`size` as found, or "more than the limit" when it grew).
    TooLarge { size: u64, kind: FileKind },
    /// A text file that is not UTF-8.
    NotText { kind: FileKind },
    /// (writing) The path is a symbolic link.
    Link,
    /// (writing) The path is a file this process has read.
    Input(FileKind),
    /// (writing) The path holds a record this process is writing or wrote.
    OwnRecord,
    /// (writing) The path is a directory, FIFO, device…
    NotWritable { what: &'static str },
    /// (writing) The path ends in no file name (`/tmp/`, `..`).
    NoFileName,
    /// (writing) The file cannot be created or written.
    Create(String),
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileProblem::Io(e) => write!(f, "cannot read: {e}"),
            FileProblem::NotRegular { what, kind } => {
                write!(f, "is {what}, not a regular file ({} is read only from a regular file)", kind.a_noun())
            }
            FileProblem::TooLarge { size, kind } => write!(
                f,
                "is {}, larger than any {} (at most {}); is this the right file?",
                human_size(*size),
                kind.noun(),
                human_size(kind.limit())
            ),
            FileProblem::NotText { kind } => write!(f, "is not a text file (not UTF-8): is it {}?", kind.a_noun()),
            FileProblem::Link => f.write_str(
                "is a symbolic link; organ does not write through links: name the file itself, or another file",
            ),
            FileProblem::Input(kind) => write!(
                f,
                "this is {} this performance reads; organ never writes over its inputs: name another file",
                kind.a_noun()
            ),
            FileProblem::NotWritable { what } => {
                write!(f, "is {what}; organ writes only to a regular file: name another file")
            }
            FileProblem::OwnRecord => f.write_str(
                "holds the record organ is making in this run (named twice, or reopened); organ does not replace it: name another file",
            ),
            FileProblem::NoFileName => f.write_str("names no file; name a file, e.g. record.mid"),
            FileProblem::Create(e) => write!(f, "cannot create the file: {e}"),
        }
    }
}

/// A file that could not be read: `score.mid: is a directory, not a file; …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub file: String,
    pub problem: FileProblem,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.problem)
    }
}

impl std::error::Error for FileError {}

/// `12.3 MB`, `512 KiB`-style sizes for messages (binary units, as the limits are).
pub fn human_size(n: u64) -> String {
    if n >= 1 << 30 {
        format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64)
    } else if n >= MIB {
        format!("{:.1} MiB", n as f64 / MIB as f64)
    } else if n >= 1024 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} bytes")
    }
}

/// The inputs read so far: (device, inode, what it was), each with the file kept open so that
/// its inode cannot be reused by another file while the process runs (which would make that
/// file look like an input).
static INPUTS: Mutex<Vec<(u64, u64, FileKind, std::fs::File)>> = Mutex::new(Vec::new());
/// The records this process has created: (device, inode), kept open for the same reason.
static RECORDS: Mutex<Vec<(u64, u64, std::fs::File)>> = Mutex::new(Vec::new());

/// Notes a record this process writes, so that naming it again (`--to file:X --to file:X`, or
/// reopening a lost output during a service) cannot replace what it already holds.
pub fn remember_record(file: &std::fs::File) {
    #[cfg(unix)]
    if let (Ok(meta), Ok(held), Ok(mut records)) = (file.metadata(), file.try_clone(), RECORDS.lock()) {
        use std::os::unix::fs::MetadataExt;
        records.push((meta.dev(), meta.ino(), held));
    }
    #[cfg(not(unix))]
    let _ = file;
}

fn is_own_record(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = std::fs::symlink_metadata(path) else { return false };
        RECORDS.lock().is_ok_and(|r| r.iter().any(|(d, i, _)| (*d, *i) == (meta.dev(), meta.ino())))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

/// Opens `path` for reading without blocking, and checks that it is a regular file within the
/// kind's limit. Returns the open file and its size.
fn open_regular(path: &Path, kind: FileKind) -> Result<(std::fs::File, u64), FileProblem> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // A FIFO would block the open until a writer comes; with O_NONBLOCK it opens at once
        // and is refused below. Regular files ignore the flag.
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(|e| FileProblem::Io(io_text(&e)))?;
    let meta = file.metadata().map_err(|e| FileProblem::Io(io_text(&e)))?;
    if !meta.is_file() {
        return Err(FileProblem::NotRegular { what: file_type_name(&meta.file_type()), kind });
    }
    if meta.len() > kind.limit() {
        return Err(FileProblem::TooLarge { size: meta.len(), kind });
    }
    Ok((file, meta.len()))
}

/// Reads a user's file of the given kind: a regular file, at most [`FileKind::limit`] bytes,
/// and remembers it as an input of this process (see [`input_named`]; not GrandOrgue settings,
/// which are read only to be replaced).
///
/// # Errors
/// The file cannot be opened or read, is not a regular file, or is over the limit.
pub fn read_user_file(path: &Path, kind: FileKind) -> Result<Vec<u8>, FileError> {
    let err = |problem| FileError { file: path.display().to_string(), problem };
    let (file, size) = open_regular(path, kind).map_err(err)?;
    // GrandOrgue settings are read only to see whether `organ` wrote them, before replacing them.
    if kind != FileKind::GrandOrgueSettings {
        remember(&file, kind);
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(kind.limit() + 1).read_to_end(&mut bytes).map_err(|e| err(FileProblem::Io(io_text(&e))))?;
    if bytes.len() as u64 > kind.limit() {
        // It grew while it was read.
        return Err(err(FileProblem::TooLarge { size: bytes.len() as u64, kind }));
    }
    Ok(bytes)
}

/// Opens a user's file of the given kind for reading in parts (an organ package): a regular
/// file within the kind's limit, remembered as an input like [`read_user_file`].
///
/// # Errors
/// The file cannot be opened, is not a regular file, or is over the limit.
pub fn open_user_file(path: &Path, kind: FileKind) -> Result<std::fs::File, FileError> {
    let (file, _) =
        open_regular(path, kind).map_err(|problem| FileError { file: path.display().to_string(), problem })?;
    remember(&file, kind);
    Ok(file)
}

/// [`read_user_file`] for a text file (UTF-8).
///
/// # Errors
/// As [`read_user_file`], and a file that is not UTF-8.
pub fn read_user_text(path: &Path, kind: FileKind) -> Result<String, FileError> {
    let bytes = read_user_file(path, kind)?;
    String::from_utf8(bytes)
        .map_err(|_| FileError { file: path.display().to_string(), problem: FileProblem::NotText { kind } })
}

fn remember(file: &std::fs::File, kind: FileKind) {
    #[cfg(unix)]
    if let Ok(meta) = file.metadata() {
        use std::os::unix::fs::MetadataExt;
        if let Ok(mut inputs) = INPUTS.lock() {
            let id = (meta.dev(), meta.ino());
            // Read again (an ODF is first opened to see whether it is a package): the later,
            // more precise kind names it.
            if let Some(known) = inputs.iter_mut().find(|(d, i, _, _)| (*d, *i) == id) {
                known.2 = kind;
            } else if let Ok(held) = file.try_clone() {
                inputs.push((id.0, id.1, kind, held));
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (file, kind);
}

/// If `path` names (after following links) a file this process has read as an input, what it
/// was read as. Outputs call this before they create or replace a file.
pub fn input_named(path: &Path) -> Option<FileKind> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        let inputs = INPUTS.lock().ok()?;
        inputs.iter().find(|(d, i, _, _)| *d == meta.dev() && *i == meta.ino()).map(|(_, _, k, _)| *k)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Whether `path` may be replaced by a file `organ` writes: it may not exist yet, or be a
/// regular file that this process has not read as an input. A symbolic link is refused (even to
/// a harmless file: `organ` never writes through one), and so is a directory or special file.
///
/// # Errors
/// What `path` is instead.
pub fn check_replaceable(path: &Path) -> Result<(), FileProblem> {
    if path.file_name().is_none() {
        return Err(FileProblem::NoFileName);
    }
    if let Some(kind) = input_named(path) {
        return Err(FileProblem::Input(kind));
    }
    if is_own_record(path) {
        return Err(FileProblem::OwnRecord);
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(FileProblem::Link),
        Ok(m) if !m.is_file() => Err(FileProblem::NotWritable { what: file_type_name(&m.file_type()) }),
        _ => Ok(()),
    }
}

/// Creates a new, empty file beside `path` under a temporary name (`.NAME.organ-PID-N.tmp`),
/// never following a link and never opening an existing file. Write it, then
/// [`rename_into_place`].
///
/// # Errors
/// The folder does not exist or is not writable.
pub fn create_beside(path: &Path) -> Result<(std::fs::File, std::path::PathBuf), FileProblem> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or(FileProblem::NoFileName)?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".organ-{}-{}.tmp", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
    let tmp = folder_of(path).join(tmp_name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).mode(0o666);
    }
    let file = options.open(&tmp).map_err(|e| FileProblem::Create(io_text(&e)))?;
    Ok((file, tmp))
}

/// Renames a file made by [`create_beside`] to `path` (replacing what is there, a link itself
/// rather than its target), and forces the folder entry to disk. On failure the temporary file
/// is removed.
///
/// # Errors
/// The rename failed.
pub fn rename_into_place(tmp: &Path, path: &Path) -> Result<(), FileProblem> {
    if let Err(e) = std::fs::rename(tmp, path) {
        let _ = std::fs::remove_file(tmp);
        return Err(FileProblem::Create(io_text(&e)));
    }
    if let Ok(d) = std::fs::File::open(folder_of(path)) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes a whole file safely: [`check_replaceable`], [`create_beside`], write and sync,
/// [`rename_into_place`].
///
/// # Errors
/// As those, and a failed write.
pub fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    use std::io::Write;
    let err = |problem| FileError { file: path.display().to_string(), problem };
    check_replaceable(path).map_err(err)?;
    let (mut f, tmp) = create_beside(path).map_err(err)?;
    if let Err(e) = f.write_all(bytes).and_then(|()| f.sync_all()) {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(FileProblem::Create(io_text(&e))));
    }
    rename_into_place(&tmp, path).map_err(err)
}

fn folder_of(path: &Path) -> std::path::PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    }
}

/// "a directory", "a FIFO (named pipe)", … for messages.
pub fn file_type_name(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_file() {
        "a file"
    } else {
        "not a regular file"
    }
}

/// The OS error without Rust's "(os error N)" suffix.
pub fn io_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("organ-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn special_files_are_refused_by_what_they_are() {
        let e = read_user_file(Path::new("/dev/zero"), FileKind::Score).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/dev/zero: is a character device, not a regular file (a MIDI score is read only from a regular file)"
        );
        let d = scratch("dir");
        let e = read_user_file(&d, FileKind::Organ).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("is a directory, not a regular file (an organ definition is read only from a regular file)"),
            "{e}"
        );
        let fifo = d.join("fifo.toml");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_user_file(&fifo, FileKind::Registration).unwrap_err();
        assert!(e.to_string().contains("is a FIFO (named pipe), not a regular file"), "{e}");
        let e = read_user_file(&d.join("missing.mid"), FileKind::Score).unwrap_err();
        assert!(e.to_string().ends_with("missing.mid: cannot read: No such file or directory"), "{e}");
    }

    #[test]
    fn oversize_files_are_refused_before_reading() {
        let d = scratch("big");
        let p = d.join("big.toml");
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(3 << 30).unwrap(); // sparse: 3 GiB that take no room
        let e = read_user_file(&p, FileKind::Organ).unwrap_err();
        assert_eq!(e.problem, FileProblem::TooLarge { size: 3 << 30, kind: FileKind::Organ });
        assert!(e.to_string().contains("is 3.0 GiB, larger than any organ definition (at most 1.0 MiB)"), "{e}");
        f.set_len(MIB).unwrap();
        assert_eq!(read_user_file(&p, FileKind::Organ).unwrap().len() as u64, MIB);
    }

    #[test]
    fn replacing_a_file_never_follows_a_link_nor_touches_an_input() {
        let d = scratch("replace");
        let target = d.join("precious.txt");
        std::fs::write(&target, "keep me").unwrap();
        let link = d.join("out.cmb");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(replace_file(&link, b"new").unwrap_err().problem, FileProblem::Link);
        let input = d.join("in.organ");
        std::fs::write(&input, "[Organ]\n").unwrap();
        read_user_file(&input, FileKind::Odf).unwrap();
        assert_eq!(replace_file(&input, b"new").unwrap_err().problem, FileProblem::Input(FileKind::Odf));
        assert!(matches!(replace_file(&d, b"x").unwrap_err().problem, FileProblem::NotWritable { .. }));
        let out = d.join("fresh.cmb");
        replace_file(&out, b"one").unwrap();
        replace_file(&out, b"two").unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"two");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
        assert_eq!(std::fs::read_to_string(&input).unwrap(), "[Organ]\n");
        let names: Vec<_> = std::fs::read_dir(&d).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names.len(), 4, "no temporary file left: {names:?}");
    }

    #[test]
    fn inputs_are_remembered_by_identity() {
        let d = scratch("inputs");
        let p = d.join("a.toml");
        std::fs::write(&p, "x = 1\n").unwrap();
        let link = d.join("b.toml");
        std::fs::hard_link(&p, &link).unwrap();
        assert_eq!(input_named(&link), None);
        assert_eq!(read_user_text(&p, FileKind::Registration).unwrap(), "x = 1\n");
        assert_eq!(input_named(&link), Some(FileKind::Registration));
        assert_eq!(input_named(&d.join("c.toml")), None);
        std::fs::write(d.join("bin.toml"), [0xFF, 0xFE]).unwrap();
        let e = read_user_text(&d.join("bin.toml"), FileKind::Organ).unwrap_err();
        assert!(e.to_string().contains("not a text file"), "{e}");
    }
}
