//! The known_hosts files as OpenSSH loads them for a connection (UserKnownHostsFile, then
//! the GlobalKnownHostsFiles, as one list), read once per process while none of them
//! changes, and indexed once per content: a fleet's connections look their hosts up in the
//! same files.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::mutex::lock;

use super::known_hosts_file::{self as file, Entry, Status};

/// All the known_hosts files as one text, as OpenSSH loads UserKnownHostsFile then the
/// GlobalKnownHostsFiles into one list, and where each file starts, to name a line's file.
/// The first file is where accept-new records keys.
pub(super) struct Combined {
    index: file::Index,
    /// The first line (1-based, in the combined text) of each file read.
    starts: Vec<(usize, PathBuf)>,
    /// What each name looked up found: a connection looks its host up three times, and a
    /// hashed line costs an HMAC at each lookup.
    found: Mutex<HashMap<String, Vec<Entry>>>,
}

/// What was last read of a list of files: a fleet's connections look their hosts up in
/// the same files, thousands of lines each, three times per connection. Read again when one
/// of them changed (a key learned, an operator's edit), and indexed again only when what it
/// holds did.
struct Kept {
    stamps: Vec<Option<Stamp>>,
    /// Whether the stamps tell the content: none had changed too recently when read.
    trusted: bool,
    /// The files' text, which tells the content when the stamps cannot: a fleet's first
    /// connections start within a second of its known_hosts being written.
    text: Arc<str>,
    combined: Arc<Combined>,
}

type Cache = HashMap<Vec<PathBuf>, Kept>;
static READ: LazyLock<Mutex<Cache>> = LazyLock::new(Default::default);

fn cache() -> std::sync::MutexGuard<'static, Cache> {
    lock(&READ)
}

/// What tells a file's content apart without reading it, taken from the file opened (so
/// that a network file system checks it again, as for OpenSSH's own open): which file, its
/// size, when its content and its inode (permissions, a `touch -r`) last changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    file: (u64, u64),
    len: u64,
    modified: SystemTime,
    changed: SystemTime,
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        let changed = u32::try_from(m.ctime_nsec())
            .ok()
            .and_then(|nanos| {
                let secs = u64::try_from(m.ctime()).ok()?;
                UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
            })
            .unwrap_or(UNIX_EPOCH);
        Stamp {
            file: (m.dev(), m.ino()),
            len: m.len(),
            modified: m.modified().unwrap_or(UNIX_EPOCH),
            changed,
        }
    }

    /// Changed too recently (or in the future) for its stamp to tell: file times tick
    /// every few milliseconds (every second on some file systems), so a second write of the
    /// same size in the same tick would look the same (git's "racily clean" entries).
    fn too_recent(&self, now: SystemTime) -> bool {
        [self.modified, self.changed].iter().any(|at| {
            now.duration_since(*at)
                .map_or(true, |age| age < Duration::from_secs(1))
        })
    }
}

/// Why `path` could not be read, as the verdict tells it.
fn cannot_read(path: &Path, e: std::io::Error) -> String {
    format!("cannot read {}: {e}", path.display())
}

/// `path` opened, with its stamp; `None` when it does not exist (it records nothing).
fn open(path: &Path) -> Result<Option<(File, Stamp)>, String> {
    let cannot = |e| cannot_read(path, e);
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(cannot(e)),
    };
    let stamp = Stamp::of(&file.metadata().map_err(cannot)?);
    Ok(Some((file, stamp)))
}

/// The files' text as one, and the first line of each file in it.
fn read_text(
    files: &[PathBuf],
    opened: Vec<Option<(File, Stamp)>>,
) -> Result<(String, Vec<(usize, PathBuf)>), String> {
    let mut text = String::new();
    let mut starts = Vec::new();
    for (path, opened) in files.iter().zip(opened) {
        let Some((mut file, _)) = opened else {
            continue;
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| cannot_read(path, e))?;
        let read = String::from_utf8_lossy(&bytes);
        starts.push((text.lines().count() + 1, path.clone()));
        text.push_str(&read);
        if !read.is_empty() && !read.ends_with('\n') {
            text.push('\n');
        }
    }
    Ok((text, starts))
}

impl Combined {
    /// The files as they are now: as last read while none of them has changed since.
    pub(super) fn read(files: &[PathBuf]) -> Result<Arc<Combined>, String> {
        // Before the files are looked at: a change from then on is too recent to trust.
        Self::read_at(files, SystemTime::now())
    }

    fn indexed(text: &str, starts: Vec<(usize, PathBuf)>) -> Combined {
        Combined {
            index: file::Index::new(text),
            starts,
            found: Mutex::default(),
        }
    }

    fn read_at(files: &[PathBuf], now: SystemTime) -> Result<Arc<Combined>, String> {
        let opened = files
            .iter()
            .map(|f| open(f))
            .collect::<Result<Vec<_>, _>>()?;
        let stamps: Vec<Option<Stamp>> = opened.iter().map(|o| o.as_ref().map(|o| o.1)).collect();
        let kept = cache().get(files).map(|k| {
            let unchanged = k.trusted && k.stamps == stamps;
            (unchanged, k.text.clone(), k.combined.clone())
        });
        if let Some((true, _, combined)) = kept {
            return Ok(combined);
        }
        // Read and indexed without the lock: other connections go on meanwhile.
        let (text, starts) = read_text(files, opened)?;
        let (text, combined) = match kept {
            Some((_, kept, combined)) if *kept == text && combined.starts == starts => {
                (kept, combined)
            }
            _ => {
                let combined = Arc::new(Combined::indexed(&text, starts));
                (text.into(), combined)
            }
        };
        let trusted = !stamps.iter().flatten().any(|s| s.too_recent(now));
        let kept = Kept {
            stamps,
            trusted,
            text,
            combined: combined.clone(),
        };
        cache().insert(files.to_vec(), kept);
        Ok(combined)
    }

    /// The file and line (as an editor numbers them) of a line of the combined text.
    pub(super) fn place(&self, line: usize) -> (PathBuf, usize) {
        self.starts
            .iter()
            .rev()
            .find(|(first, _)| *first <= line)
            .map_or((PathBuf::new(), line), |(first, path)| {
                (path.clone(), line - first + 1)
            })
    }

    /// The entries for the host, with OpenSSH's fallback to the bare name for a port
    /// other than 22 when `[host]:port` finds nothing (only a recorded or revoked key
    /// counts there).
    pub(super) fn status(
        &self,
        host: &str,
        port: u16,
        status_of: impl Fn(&[Entry]) -> Status,
    ) -> Status {
        let status = status_of(&self.entries(host, port));
        if status != Status::New || port == 22 {
            return status;
        }
        match status_of(&self.entries(host, 22)) {
            s @ (Status::Known { .. } | Status::Revoked { .. }) => s,
            _ => Status::New,
        }
    }

    pub(super) fn entries(&self, host: &str, port: u16) -> Vec<Entry> {
        let name = file::lookup_name(host, port);
        let found = || lock(&self.found);
        if let Some(entries) = found().get(&name) {
            return entries.clone();
        }
        // Matched without the lock: a hashed line costs an HMAC.
        let entries = self.index.entries(&name);
        found().insert(name, entries.clone());
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::super::known_hosts_file::test_keys::{KEY, OTHER};
    use super::*;
    use russh::keys::PublicKey;

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).expect("test key")
    }

    /// Writes `text` to `path` and sets its time of last write.
    fn write_at(path: &Path, text: &str, modified: SystemTime) {
        std::fs::write(path, text).expect("write");
        let file = std::fs::File::options()
            .write(true)
            .open(path)
            .expect("open");
        file.set_modified(modified)
            .expect("set the time of last write");
    }

    /// A second after the test's writes, when their stamps can be trusted.
    fn later() -> SystemTime {
        SystemTime::now() + Duration::from_secs(2)
    }

    fn known(combined: &Combined, k: &str) -> bool {
        matches!(
            file::key_status(&combined.entries("h", 22), &key(k)),
            Status::Known { .. }
        )
    }

    #[test]
    fn the_files_are_read_again_only_when_one_changed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("known_hosts");
        let other = dir.path().join("global");
        let files = [path.clone(), other.clone()];
        let then = SystemTime::now() - Duration::from_secs(60);
        write_at(&path, &format!("h {KEY}\n"), then);
        let first = Combined::read_at(&files, later()).expect("read");
        assert!(known(&first, KEY));
        let again = Combined::read_at(&files, later()).expect("read");
        assert!(Arc::ptr_eq(&first, &again), "unchanged: not read again");
        // Another key of the same length, written later: read again.
        write_at(
            &path,
            &format!("h {OTHER}\n"),
            then + Duration::from_secs(1),
        );
        let changed = Combined::read_at(&files, later()).expect("read");
        assert!(known(&changed, OTHER) && !known(&changed, KEY));
        // Replaced by another file of the same size and time: read again.
        let new = dir.path().join("new");
        write_at(&new, &format!("h {KEY}\n"), then + Duration::from_secs(1));
        std::fs::rename(&new, &path).expect("rename");
        assert!(known(
            &Combined::read_at(&files, later()).expect("read"),
            KEY
        ));
        // A file of the list that appears: read again.
        write_at(&other, &format!("h {OTHER}\n"), then);
        let both = Combined::read_at(&files, later()).expect("read");
        assert!(known(&both, OTHER) && known(&both, KEY));
    }

    #[test]
    fn files_changed_in_the_last_second_or_in_the_future_are_read_every_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kept = |files: &[PathBuf]| cache().get(files).is_some_and(|k| k.trusted);
        let (past, future) = (dir.path().join("past"), dir.path().join("future"));
        write_at(
            &past,
            &format!("h {KEY}\n"),
            SystemTime::now() - Duration::from_secs(60),
        );
        // Its inode changed just now (its time of last write was set).
        Combined::read(std::slice::from_ref(&past)).expect("read");
        assert!(!kept(std::slice::from_ref(&past)));
        Combined::read_at(std::slice::from_ref(&past), later()).expect("read");
        assert!(kept(std::slice::from_ref(&past)));
        let ahead = SystemTime::now() + Duration::from_secs(3600);
        write_at(&future, &format!("h {KEY}\n"), ahead);
        Combined::read_at(std::slice::from_ref(&future), later()).expect("read");
        assert!(!kept(std::slice::from_ref(&future)));
    }

    #[test]
    fn a_file_changed_too_recently_is_indexed_again_only_when_its_text_changed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = [dir.path().join("known_hosts")];
        let now = SystemTime::now();
        write_at(&files[0], &format!("h {KEY}\n"), now);
        let first = Combined::read_at(&files, now).expect("read");
        let again = Combined::read_at(&files, now).expect("read");
        assert!(Arc::ptr_eq(&first, &again), "the same text: the same index");
        // Another key of the same length in the same tick: the stamp cannot tell, the text does.
        write_at(&files[0], &format!("h {OTHER}\n"), now);
        let changed = Combined::read_at(&files, now).expect("read");
        assert!(known(&changed, OTHER) && !known(&changed, KEY));
    }

    #[test]
    fn an_unreadable_file_is_an_error_every_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = [dir.path().to_path_buf()];
        for _ in 0..2 {
            let error = Combined::read_at(&files, later())
                .err()
                .expect("a directory");
            assert!(error.starts_with("cannot read "), "{error}");
        }
    }
}
