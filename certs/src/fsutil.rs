//! File writes that never leave a half-written certificate, key or CRL behind, and never
//! expose a private key to other users, not even briefly.

use std::fs;
use std::io::{self, Write as _};
use std::path::Path;

use crate::error::Error;

/// Who may read a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Owner only (0600): private keys.
    Private,
    /// Everyone may read (0644): certificates and CRLs.
    Public,
}

/// Whether an existing file may be replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Overwrite {
    /// Fail with `AlreadyExists` if the file exists (checked atomically by the rename).
    Refuse,
    /// Replace the file atomically.
    Replace,
}

/// Writes `contents` to `path` atomically: a temporary file in the same directory (created
/// 0600 by `tempfile`, then given `mode`), fsync, rename over `path`, fsync of the directory.
/// Readers see the old file or the new one, never a mix, even across a crash.
pub(crate) fn write_atomic(
    path: &Path,
    contents: &[u8],
    mode: Mode,
    overwrite: Overwrite,
) -> Result<(), Error> {
    let dir = parent_dir(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(".aimux-tmp-")
        .tempfile_in(dir)
        .map_err(Error::io("create a temporary file in", dir))?;
    set_mode(tmp.as_file(), mode).map_err(Error::io("set permissions on", tmp.path()))?;
    tmp.write_all(contents)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(Error::io("write", tmp.path()))?;
    let persisted = match overwrite {
        Overwrite::Replace => tmp.persist(path),
        Overwrite::Refuse => tmp.persist_noclobber(path),
    };
    // On failure the temporary file is deleted when the returned handle drops.
    persisted.map_err(|e| Error::io("write", path)(e.error))?;
    sync_dir(dir)
}

/// How long a command waits for another one to release the CA directory's lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// An exclusive advisory lock (flock) on `<dir>/.lock`, held until dropped. The kernel drops
/// it when the holder exits, so a crashed command never leaves a stale lock.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: fs::File,
}

/// Takes the CA directory's lock, waiting at most [`LOCK_WAIT`]: read-modify-write of a
/// shared file (the CRL) must not interleave with another command's, or one revocation
/// would silently overwrite the other.
pub(crate) fn lock_dir(dir: &Path) -> Result<DirLock, Error> {
    let path = dir.join(".lock");
    let mut options = fs::OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let file = options
        .open(&path)
        .map_err(Error::io("open the lock file", &path))?;
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(DirLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    path,
                    waited: LOCK_WAIT,
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(Error::io("lock", &path)(e)),
        }
    }
}

/// Creates `dir` (and its parents) if needed; directories we create are 0700 since they will
/// hold private keys.
pub(crate) fn create_dir(dir: &Path) -> Result<(), Error> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(Error::io("create directory", dir))
}

/// Reads a whole file; `Ok(None)` if it does not exist.
pub(crate) fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>, Error> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path)(e)),
    }
}

/// Reads a whole file.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, Error> {
    fs::read(path).map_err(Error::io("read", path))
}

/// Whether `path` exists (a dangling symlink counts: we must not write through it).
pub(crate) fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(unix)]
fn set_mode(file: &fs::File, mode: Mode) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let bits = match mode {
        Mode::Private => 0o600,
        Mode::Public => 0o644,
    };
    file.set_permissions(fs::Permissions::from_mode(bits))
}

#[cfg(not(unix))]
fn set_mode(_file: &fs::File, _mode: Mode) -> io::Result<()> {
    Ok(())
}

/// Makes the rename durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<(), Error> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("sync directory", dir))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), Error> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode_of(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn writes_with_modes_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("a.key");
        let crt = dir.path().join("a.crt");
        write_atomic(&key, b"secret", Mode::Private, Overwrite::Refuse).unwrap();
        write_atomic(&crt, b"public", Mode::Public, Overwrite::Refuse).unwrap();
        assert_eq!(fs::read(&key).unwrap(), b"secret");
        #[cfg(unix)]
        {
            assert_eq!(mode_of(&key), 0o600);
            assert_eq!(mode_of(&crt), 0o644);
        }
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn refuse_keeps_the_existing_file_and_replace_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crl.pem");
        write_atomic(&path, b"one", Mode::Public, Overwrite::Refuse).unwrap();
        let err = write_atomic(&path, b"two", Mode::Public, Overwrite::Refuse).unwrap_err();
        assert!(
            matches!(&err, Error::Io { source, .. } if source.kind() == io::ErrorKind::AlreadyExists),
            "{err}"
        );
        assert_eq!(fs::read(&path).unwrap(), b"one");
        write_atomic(&path, b"two", Mode::Public, Overwrite::Replace).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn created_directories_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        create_dir(&nested).unwrap();
        assert_eq!(mode_of(&nested), 0o700);
        assert_eq!(read_if_exists(&nested.join("none")).unwrap(), None);
    }
}
