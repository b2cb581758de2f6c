//! Reading GrandOrgue organ packages (`.orgue`): ZIP archives holding one or more organ
//! definitions with their samples, and an `organindex.ini` that names the organs.
//!
//! GrandOrgue 3.9 (`GOArchiveReader`) reads only entries stored without compression, with ZIP64
//! sizes and offsets where a package passes 4 GiB; so does this reader. Only the directory and
//! the few entries asked for are read (a package may hold gigabytes of samples). Nothing is
//! written and no entry name is used as a path. Runs on the control thread.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::odf::{Ini, OdfError};

/// One file in a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The name inside the archive, `/`-separated.
    pub name: String,
    /// Where its local header starts.
    offset: u64,
    pub size: u64,
    compressed_size: u64,
    /// ZIP compression method (0 = stored).
    method: u16,
}

/// An open organ package.
#[derive(Debug)]
pub struct Package {
    file: File,
    /// The package's path, for messages.
    pub path: String,
    pub entries: Vec<Entry>,
}

/// An organ listed in `organindex.ini`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedOrgan {
    /// The ODF's name inside the package, e.g. `demo.organ`.
    pub odf: String,
    pub church_name: String,
}

const EOCD: u32 = 0x0605_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
const ZIP64_EOCD: u32 = 0x0606_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const LOCAL: u32 = 0x0403_4b50;

fn u16le(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64le(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Whether `path` names an organ package (by its extension, as GrandOrgue decides).
pub fn is_package(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("orgue"))
}

impl Package {
    /// Opens a package and reads its directory.
    ///
    /// # Errors
    /// Unreadable file, or not a ZIP archive GrandOrgue could read.
    pub fn open(path: &Path) -> Result<Package, OdfError> {
        let name = path.display().to_string();
        let err = |m: String| OdfError { file: name.clone(), message: m };
        // A regular file only (a FIFO would hang, a device never end); its size is not limited:
        // only its directory and one organ definition (at most 64 MiB) are read from it.
        let mut file = crate::files::open_user_file(path, crate::files::FileKind::OrganPackage)
            .map_err(|e| err(e.problem.to_string()))?;
        let len = file.seek(SeekFrom::End(0)).map_err(|e| err(format!("cannot read: {e}")))?;
        // The end-of-central-directory record: 22 bytes plus a comment of up to 64 KiB.
        let tail_len = len.min(22 + 65_535 + 20);
        let tail =
            read_at(&mut file, len - tail_len, tail_len as usize).map_err(|e| err(format!("cannot read: {e}")))?;
        let not_zip = || err("not an organ package: no ZIP directory found (is it a .orgue file?)".into());
        let at = (0..tail.len().saturating_sub(21)).rev().find(|&i| u32le(&tail, i) == EOCD).ok_or_else(not_zip)?;
        let mut count = u64::from(u16le(&tail, at + 10));
        let mut cd_size = u64::from(u32le(&tail, at + 12));
        let mut cd_offset = u64::from(u32le(&tail, at + 16));
        if (count == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_offset == 0xFFFF_FFFF)
            && at >= 20
            && u32le(&tail, at - 20) == ZIP64_LOCATOR
        {
            let z = u64le(&tail, at - 20 + 8);
            let rec = read_at(&mut file, z, 56).map_err(|e| err(format!("cannot read the ZIP64 directory: {e}")))?;
            if u32le(&rec, 0) != ZIP64_EOCD {
                return Err(err("broken ZIP64 directory record".into()));
            }
            (count, cd_size, cd_offset) = (u64le(&rec, 32), u64le(&rec, 40), u64le(&rec, 48));
        }
        if cd_offset.checked_add(cd_size).is_none_or(|end| end > len) || cd_size > 256 << 20 {
            return Err(err("broken ZIP directory (it points past the end of the file)".into()));
        }
        let cd = read_at(&mut file, cd_offset, cd_size as usize).map_err(|e| err(format!("cannot read: {e}")))?;
        let entries = parse_directory(&cd, count).ok_or_else(|| err("broken ZIP directory".into()))?;
        Ok(Package { file, path: name, entries })
    }

    /// The bytes of the entry `name` (compared case-insensitively, `\` read as `/`).
    ///
    /// # Errors
    /// No such entry, an entry GrandOrgue could not read either (compressed), or a read error.
    pub fn read(&mut self, name: &str) -> Result<Vec<u8>, OdfError> {
        let err = |m: String| OdfError { file: self.path.clone(), message: m };
        let wanted = name.replace('\\', "/");
        let e = self
            .entries
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case(&wanted))
            .cloned()
            .ok_or_else(|| err(format!("the package has no file {wanted}")))?;
        if e.method != 0 || e.size != e.compressed_size {
            return Err(err(format!(
                "{}: compressed (method {}); GrandOrgue reads only packages stored without compression",
                e.name, e.method
            )));
        }
        if e.size > 64 << 20 {
            return Err(err(format!("{}: {} bytes is too large to read", e.name, e.size)));
        }
        let head = read_at(&mut self.file, e.offset, 30).map_err(|x| err(format!("{}: cannot read: {x}", e.name)))?;
        if u32le(&head, 0) != LOCAL {
            return Err(err(format!("{}: broken local header", e.name)));
        }
        let data = e.offset + 30 + u64::from(u16le(&head, 26)) + u64::from(u16le(&head, 28));
        read_at(&mut self.file, data, e.size as usize).map_err(|x| err(format!("{}: cannot read: {x}", e.name)))
    }

    /// The organs `organindex.ini` lists.
    ///
    /// # Errors
    /// No index, or an index without organs.
    pub fn organs(&mut self) -> Result<Vec<IndexedOrgan>, OdfError> {
        let ini = Ini::parse(&Ini::decode(&self.read("organindex.ini")?));
        let count: usize = ini.get_trimmed("General", "OrganCount").and_then(|v| v.parse().ok()).unwrap_or(0);
        let organs: Vec<IndexedOrgan> = (1..=count)
            .filter_map(|i| {
                let section = format!("Organ{i:03}");
                Some(IndexedOrgan {
                    odf: ini.get_trimmed(&section, "Filename")?.to_string(),
                    church_name: ini.get_trimmed(&section, "ChurchName").unwrap_or_default().to_string(),
                })
            })
            .collect();
        if organs.is_empty() {
            return Err(OdfError {
                file: self.path.clone(),
                message: "organindex.ini lists no organ ([General] OrganCount, [Organ001] Filename)".into(),
            });
        }
        Ok(organs)
    }
}

fn read_at(file: &mut File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; len];
    file.read_exact(&mut buf)?;
    Ok(buf)
}

/// The central directory's entries, with ZIP64 extra fields applied; `None` when it is broken.
fn parse_directory(cd: &[u8], count: u64) -> Option<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut p = 0usize;
    while entries.len() as u64 != count {
        if p + 46 > cd.len() || u32le(cd, p) != CENTRAL {
            return None;
        }
        let (name_len, extra_len, comment_len) =
            (usize::from(u16le(cd, p + 28)), usize::from(u16le(cd, p + 30)), usize::from(u16le(cd, p + 32)));
        let end = p + 46 + name_len + extra_len + comment_len;
        if end > cd.len() {
            return None;
        }
        let name = String::from_utf8_lossy(&cd[p + 46..p + 46 + name_len]).replace('\\', "/");
        let mut size = u64::from(u32le(cd, p + 24));
        let mut compressed_size = u64::from(u32le(cd, p + 20));
        let mut offset = u64::from(u32le(cd, p + 42));
        let mut extra = &cd[p + 46 + name_len..p + 46 + name_len + extra_len];
        while extra.len() >= 4 {
            let (id, n) = (u16le(extra, 0), usize::from(u16le(extra, 2)));
            let body = extra.get(4..4 + n)?;
            if id == 0x0001 {
                let mut q = 0;
                for field in [&mut size, &mut compressed_size, &mut offset] {
                    if *field == 0xFFFF_FFFF && q + 8 <= body.len() {
                        *field = u64le(body, q);
                        q += 8;
                    }
                }
            }
            extra = &extra[4 + n..];
        }
        entries.push(Entry { name, offset, size, compressed_size, method: u16le(cd, p + 10) });
        p = end;
    }
    Some(entries)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A stored ZIP archive of `files`, optionally with ZIP64 records, as a packer writes it.
    pub(crate) fn zip(files: &[(&str, &[u8])], zip64: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, data) in files {
            let offset = out.len() as u32;
            out.extend_from_slice(&LOCAL.to_le_bytes());
            out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // version, flags, method, time, date, crc
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(data);
            central.extend_from_slice(&CENTRAL.to_le_bytes());
            central.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            let (size, off, extra): (u32, u32, Vec<u8>) = if zip64 {
                let mut x = vec![1, 0, 24, 0];
                for v in [data.len() as u64, data.len() as u64, u64::from(offset)] {
                    x.extend_from_slice(&v.to_le_bytes());
                }
                (0xFFFF_FFFF, 0xFFFF_FFFF, x)
            } else {
                (data.len() as u32, offset, Vec::new())
            };
            central.extend_from_slice(&size.to_le_bytes());
            central.extend_from_slice(&size.to_le_bytes());
            central.extend_from_slice(&(name.len() as u16).to_le_bytes());
            central.extend_from_slice(&(extra.len() as u16).to_le_bytes());
            central.extend_from_slice(&[0; 10]); // comment length, disk, attributes
            central.extend_from_slice(&off.to_le_bytes());
            central.extend_from_slice(name.as_bytes());
            central.extend_from_slice(&extra);
        }
        let cd_offset = out.len() as u64;
        out.extend_from_slice(&central);
        let n = files.len() as u64;
        if zip64 {
            let z = out.len() as u64;
            out.extend_from_slice(&ZIP64_EOCD.to_le_bytes());
            out.extend_from_slice(&44u64.to_le_bytes());
            out.extend_from_slice(&[45, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            for v in [n, n, central.len() as u64, cd_offset] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&ZIP64_LOCATOR.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&z.to_le_bytes());
            out.extend_from_slice(&1u32.to_le_bytes());
        }
        out.extend_from_slice(&EOCD.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        let (n16, size32, off32) =
            if zip64 { (0xFFFF, 0xFFFF_FFFF, 0xFFFF_FFFF) } else { (n as u16, central.len() as u32, cd_offset as u32) };
        out.extend_from_slice(&n16.to_le_bytes());
        out.extend_from_slice(&n16.to_le_bytes());
        out.extend_from_slice(&size32.to_le_bytes());
        out.extend_from_slice(&off32.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }

    fn write(tag: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("organ-package-{}-{tag}.orgue", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn reads_entries_and_the_index() {
        for zip64 in [false, true] {
            let index = b"[General]\nOrganCount=1\n[Organ001]\nFilename=sub\\test.organ\nChurchName=T\n";
            let p = write(
                &format!("ok{zip64}"),
                &zip(&[("organindex.ini", index), ("sub/test.organ", b"[Organ]\nChurchName=T\n")], zip64),
            );
            let mut pkg = Package::open(&p).unwrap();
            assert_eq!(pkg.entries.len(), 2);
            let organs = pkg.organs().unwrap();
            assert_eq!(organs, [IndexedOrgan { odf: "sub\\test.organ".into(), church_name: "T".into() }]);
            assert_eq!(pkg.read(&organs[0].odf).unwrap(), b"[Organ]\nChurchName=T\n");
            assert!(pkg.read("nope").unwrap_err().message.contains("no file nope"));
            std::fs::remove_file(p).unwrap();
        }
    }

    #[test]
    fn refuses_what_grandorgue_cannot_read() {
        let p = write("plain", b"[Organ]\nChurchName=T\n");
        assert!(Package::open(&p).unwrap_err().message.contains("not an organ package"));
        let mut bytes = zip(&[("a.organ", b"xyz")], false);
        bytes[8] = 8; // deflated
        let cd = bytes.len() - 22 - 46 - 7;
        bytes[cd + 10] = 8;
        std::fs::write(&p, bytes).unwrap();
        let e = Package::open(&p).unwrap().read("a.organ").unwrap_err();
        assert!(e.message.contains("stored without compression"), "{e}");
        let p2 = write("noindex", &zip(&[("a.organ", b"x")], false));
        assert!(Package::open(&p2).unwrap().organs().unwrap_err().message.contains("organindex.ini"));
        std::fs::remove_file(p).unwrap();
        std::fs::remove_file(p2).unwrap();
    }
}
