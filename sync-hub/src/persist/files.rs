//! File helpers with the durability rules persistence needs: a file replaced atomically
//! (written to a temporary name, fsynced, renamed over the old one, the directory fsynced),
//! so a crash at any moment leaves either the old file or the new one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// A name for a temporary file in `dir` that no other writer of this process uses.
pub fn temp_path(dir: &Path, stem: &str) -> PathBuf {
    let n = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("temp-recached-{}-{}-{}.tmp", stem, std::process::id(), n))
}

/// Fsyncs a directory, so a rename or a new file in it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(if dir.as_os_str().is_empty() { Path::new(".") } else { dir })?.sync_all()
}

/// The directory a path lives in (`.` for a bare name).
pub fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Moves a complete, fsynced temporary file over `dst` and fsyncs the directory.
pub fn commit(temp: &Path, dst: &Path) -> io::Result<()> {
    fs::rename(temp, dst)?;
    sync_dir(parent(dst))
}

/// Replaces `dst` with `data` atomically and durably.
pub fn write_atomic(dst: &Path, data: &[u8]) -> io::Result<()> {
    let dir = parent(dst);
    let stem = dst.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = temp_path(dir, &stem);
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&temp)?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        commit(&temp, dst)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Creates `dir` (and its parents) if it is missing.
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    if !dir.is_dir() {
        fs::create_dir_all(dir)?;
        if let Some(p) = dir.parent() {
            let _ = sync_dir(if p.as_os_str().is_empty() { Path::new(".") } else { p });
        }
    }
    Ok(())
}

/// Removes temporary files a crashed writer of this program left in `dir` (only names
/// [`temp_path`] makes: `dir` may be shared with other programs).
pub fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("temp-recached-") && name.ends_with(".tmp") {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// `io::Error` as Redis words OS errors in its logs and MISCONF replies (`No space left on
/// device`, without Rust's ` (os error 28)` suffix).
pub fn os_text(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_replace() {
        let dir = std::env::temp_dir().join(format!("recached-files-{}", std::process::id()));
        ensure_dir(&dir).unwrap();
        let f = dir.join("x");
        write_atomic(&f, b"one").unwrap();
        write_atomic(&f, b"two").unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"two");
        std::fs::write(temp_path(&dir, "x"), b"junk").unwrap();
        remove_stale_temps(&dir);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(os_text(&io::Error::from_raw_os_error(28)), "No space left on device");
    }
}
