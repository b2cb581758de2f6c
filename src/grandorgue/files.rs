//! The file side of `organ grandorgue config` and `organ grandorgue organ`: where the output
//! goes, what may be replaced, and what the user does next.
//!
//! Safe by default: a settings file `organ` did not write and an existing organ definition are
//! only replaced with `--force`; and never (even with `--force`) a symbolic link, a special
//! file or an input such as the ODF itself: files are written beside and renamed into place
//! ([`crate::files::replace_file`]). Runs on the control thread.

use std::fmt;
use std::path::{Path, PathBuf};

use super::generate::{self, GenerateError};
use super::odf::{Odf, OdfError};
use super::{configure, package};
use crate::organ::Organ;

/// The first comment line of every settings file `organ` writes (after the BOM), to recognise
/// its own.
pub const CMB_MARK: &str = "organ grandorgue config";

/// Why a command could not do its job.
#[derive(Debug)]
pub enum FilesError {
    Odf(OdfError),
    Generate {
        odf: String,
        error: GenerateError,
    },
    /// The output exists and must not be replaced without `--force`.
    Exists {
        path: PathBuf,
        why: &'static str,
    },
    /// Writing failed or was refused (a link, an input); `hint` says what to do instead.
    Write {
        path: PathBuf,
        problem: crate::files::FileProblem,
        hint: String,
    },
}

impl fmt::Display for FilesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilesError::Odf(e) => e.fmt(f),
            FilesError::Generate { odf, error } => write!(f, "{odf}: {error}"),
            FilesError::Exists { path, why } => {
                write!(f, "{} {why}; use --force to replace it, or --out to write elsewhere", path.display())
            }
            FilesError::Write { path, problem, hint } => write!(f, "{}: {problem}{hint}", path.display()),
        }
    }
}

impl std::error::Error for FilesError {}

impl From<OdfError> for FilesError {
    fn from(e: OdfError) -> Self {
        FilesError::Odf(e)
    }
}

/// What `organ grandorgue config` did: the report and whether everything matched.
#[derive(Debug)]
pub struct ConfigDone {
    pub report: String,
    pub complete: bool,
}

/// The package behind an ODF path (`x.orgue`, `x.orgue:y.organ`), if it is one.
fn package_of(odf_path: &Path) -> Option<PathBuf> {
    if package::is_package(odf_path) {
        return Some(odf_path.to_path_buf());
    }
    let s = odf_path.to_str()?;
    let at = s.to_ascii_lowercase().rfind(".orgue:")? + ".orgue".len();
    (!odf_path.exists()).then(|| PathBuf::from(&s[..at]))
}

/// `organ grandorgue config`: matches `organ` to the GrandOrgue organ at `odf_path`, writes the
/// settings to `out` (default: beside the ODF or package, `.cmb`) and returns the report.
///
/// # Errors
/// Unreadable ODF or package; an existing settings file `organ` did not write, without `force`;
/// a write error (a read-only location suggests `--out`).
pub fn write_config(organ: &Organ, odf_path: &Path, out: Option<&Path>, force: bool) -> Result<ConfigDone, FilesError> {
    let odf = Odf::load(odf_path)?;
    let package = odf.from_package.then(|| package_of(odf_path).unwrap_or_else(|| odf_path.to_path_buf()));
    let default = package.as_deref().unwrap_or(odf_path).with_extension("cmb");
    let target = out.map_or_else(|| default.clone(), Path::to_path_buf);
    let import = "then load the organ in GrandOrgue and choose File > Import Settings";
    let hint = if out.is_some() {
        String::new()
    } else if package.is_some() {
        format!("; the package's folder is not writable: write the settings elsewhere with --out FILE.cmb, {import}")
    } else {
        format!("; write the settings elsewhere with --out FILE.cmb, {import}")
    };
    let refused = |problem| FilesError::Write { path: target.clone(), problem, hint: hint.clone() };
    crate::files::check_replaceable(&target).map_err(refused)?;
    if target.exists() && !force {
        let existing = crate::files::read_user_file(&target, crate::files::FileKind::GrandOrgueSettings)
            .map_err(|e| refused(e.problem))?;
        if !String::from_utf8_lossy(&existing[..existing.len().min(400)]).contains(CMB_MARK) {
            return Err(FilesError::Exists { path: target, why: "exists and was not written by `organ`" });
        }
    }
    let settings = configure(organ, &odf);
    let bytes = settings.to_cmb(organ, &odf, &organ.source).to_bytes();
    crate::files::replace_file(&target, &bytes).map_err(|e| refused(e.problem))?;
    let mut report = settings.report(organ, &odf);
    report.push_str(&format!("wrote {}\n", target.display()));
    if let Some(p) = &package {
        report.push_str(&format!(
            "GrandOrgue reads the settings of an organ package only from its own store: start it with the package \
             (GrandOrgue {}), {import}, and pick {}.\n",
            p.display(),
            target.display()
        ));
    } else if target == default {
        report.push_str(
            "GrandOrgue uses it when it loads this organ and has no stored settings of its own for it; \
             if you have played this organ in GrandOrgue before, load it and choose File > Import Settings instead.\n",
        );
    } else {
        report.push_str("In GrandOrgue, load the organ and choose File > Import Settings, then pick this file.\n");
    }
    if !settings.complete() {
        report.push_str(
            "note: some of the organ definition is not matched (see above); GrandOrgue will not follow those parts.\n",
        );
    }
    Ok(ConfigDone { report, complete: settings.complete() })
}

/// What `organ grandorgue organ` wrote: the TOML (for standard output when there is no file)
/// and a summary: one line, and when a file was written a second line with the next command.
#[derive(Debug)]
pub struct OrganDone {
    pub toml: String,
    pub wrote: Option<PathBuf>,
    /// The summary line, then `next: organ grandorgue config …` on a line of its own when a
    /// file was written.
    pub summary: String,
}

/// `organ grandorgue organ`: an organ definition for the GrandOrgue organ at `odf_path`, written
/// to `out` (never over an existing file without `force`) or returned for standard output.
///
/// # Errors
/// Unreadable ODF or package, an organ that cannot be described (see [`GenerateError`]), an
/// existing `out` without `force`, a write error.
pub fn write_organ(odf_path: &Path, out: Option<&Path>, force: bool) -> Result<OrganDone, FilesError> {
    let odf = Odf::load(odf_path)?;
    if let Some(p) = out {
        // Never over the ODF or through a link, even with --force.
        crate::files::check_replaceable(p).map_err(|problem| FilesError::Write {
            path: p.to_path_buf(),
            problem,
            hint: "; choose another place with --out".into(),
        })?;
        if p.exists() && !force {
            return Err(FilesError::Exists { path: p.to_path_buf(), why: "exists" });
        }
    }
    let g =
        generate::organ_definition(&odf).map_err(|error| FilesError::Generate { odf: odf.source.clone(), error })?;
    if let Some(p) = out {
        crate::files::replace_file(p, g.toml.as_bytes()).map_err(|e| FilesError::Write {
            path: p.to_path_buf(),
            problem: e.problem,
            hint: "; choose another place with --out".into(),
        })?;
    }
    let mut summary = format!(
        "{} divisions, {} stops, couplers and tremulants from {}",
        g.divisions,
        g.controls,
        super::names::printable(&odf.source)
    );
    if !g.left_out.is_empty() {
        summary.push_str(&format!("; left out (see the comments at the end): {}", g.left_out.len()));
    }
    let next = match out {
        Some(p) => format!("\nnext: organ grandorgue config --organ {} --odf {}", p.display(), odf_path.display()),
        None => String::new(),
    };
    summary.push_str(&next);
    Ok(OrganDone { toml: g.toml, wrote: out.map(Path::to_path_buf), summary })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("organ-files-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn package(dir: &Path) -> PathBuf {
        let index = b"[General]\nOrganCount=1\n[Organ001]\nFilename=s.organ\nChurchName=Switched\n";
        let zip = package::tests::zip(
            &[("organindex.ini", index), ("s.organ", super::super::drive::tests::SWITCHED.as_bytes())],
            false,
        );
        let p = dir.join("switched.orgue");
        std::fs::write(&p, zip).unwrap();
        p
    }

    fn organ() -> Organ {
        Organ::from_toml(&super::super::tests::switched_organ(), "switched.toml").unwrap()
    }

    #[test]
    fn a_package_where_nothing_can_be_written_suggests_out() {
        let dir = scratch("ro");
        let pkg = package(&dir);
        // Root may write anywhere; a link makes the default place unwritable for anyone (organ
        // never writes through one).
        std::os::unix::fs::symlink(dir.join("missing/dir/x.cmb"), dir.join("switched.cmb")).unwrap();
        let e = write_config(&organ(), &pkg, None, false).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}: is a symbolic link", dir.join("switched.cmb").display())), "{e}");
        assert!(e.contains("--out FILE.cmb") && e.contains("File > Import Settings"), "{e}");
        // with --out it goes there, and says how GrandOrgue gets it
        let out = dir.join("elsewhere.cmb");
        let done = write_config(&organ(), &pkg, Some(&out), false).unwrap();
        assert!(
            done.report.contains("only from its own store") && done.report.contains("Import Settings"),
            "{}",
            done.report
        );
        assert!(std::fs::read_to_string(&out).unwrap().contains("[Switch002]"));
        // a folder without write permission (not for root, who may write anyway)
        if unsafe { libc::geteuid() } != 0 {
            use std::os::unix::fs::PermissionsExt;
            std::fs::remove_file(dir.join("switched.cmb")).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
            let e = write_config(&organ(), &pkg, None, false).unwrap_err().to_string();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            assert!(e.contains("Permission denied") && e.contains("--out FILE.cmb"), "{e}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_organ_definition_is_not_written_over_a_file() {
        let dir = scratch("organ");
        let pkg = package(&dir);
        let out = dir.join("organ.toml");
        let done = write_organ(&pkg, Some(&out), false).unwrap();
        assert!(done.summary.starts_with("3 divisions, 4 stops, couplers and tremulants from "), "{}", done.summary);
        assert!(done.summary.contains("next: organ grandorgue config --organ"), "{}", done.summary);
        let e = write_organ(&pkg, Some(&out), false).unwrap_err().to_string();
        assert!(e.ends_with("organ.toml exists; use --force to replace it, or --out to write elsewhere"), "{e}");
        assert!(write_organ(&pkg, Some(&out), true).is_ok());
        // and what it wrote configures GrandOrgue completely
        let organ = Organ::load(&out).unwrap();
        let done = write_config(&organ, &pkg, Some(&dir.join("x.cmb")), false).unwrap();
        assert!(done.complete, "{}", done.report);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
