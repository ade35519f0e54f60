//! The known_hosts files as OpenSSH loads them for a connection (UserKnownHostsFile, then
//! the GlobalKnownHostsFiles, as one list), read once per process while none of them
//! changes: a fleet's connections look their hosts up in the same files.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime};

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

/// The files last read, by list of files: a fleet's connections look their hosts up in the
/// same files, thousands of lines each, three times per connection. Read again when one
/// of them changed (a key learned, an operator's edit).
type Cache = HashMap<Vec<PathBuf>, (Vec<Option<Stamp>>, Arc<Combined>)>;
static READ: LazyLock<Mutex<Cache>> = LazyLock::new(Default::default);

/// What tells a file's content apart without reading it: which file, its size, when it
/// was last written.
#[derive(Debug, PartialEq, Eq)]
struct Stamp {
    file: (u64, u64),
    len: u64,
    modified: SystemTime,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        let m = std::fs::metadata(path).ok()?;
        Some(Stamp {
            file: (m.dev(), m.ino()),
            len: m.len(),
            modified: m.modified().ok()?,
        })
    }

    /// Written too recently for its stamp to tell: the clock of file times ticks every few
    /// milliseconds, so a second write of the same size in the same tick would look the
    /// same (git's "racily clean" entries).
    fn too_recent(&self, now: SystemTime) -> bool {
        now.duration_since(self.modified)
            .map_or(true, |age| age < Duration::from_secs(1))
    }
}

impl Combined {
    /// The files as they are now (missing files record nothing): as last read while none
    /// of them has changed since.
    pub(super) fn read(files: &[PathBuf]) -> Result<Arc<Combined>, String> {
        // Taken before reading: a change while the files are read is seen next time.
        let stamps: Vec<Option<Stamp>> = files.iter().map(|f| Stamp::of(f)).collect();
        let mut read = READ.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, combined)) = read.get(files) {
            if *at == stamps {
                return Ok(combined.clone());
            }
        }
        let combined = Arc::new(Self::read_now(files)?);
        let now = SystemTime::now();
        if !stamps.iter().flatten().any(|s| s.too_recent(now)) {
            read.insert(files.to_vec(), (stamps, combined.clone()));
        }
        Ok(combined)
    }

    fn read_now(files: &[PathBuf]) -> Result<Combined, String> {
        let mut text = String::new();
        let mut starts = Vec::new();
        for path in files {
            let file = match std::fs::read(path) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
            };
            starts.push((text.lines().count() + 1, path.clone()));
            text.push_str(&file);
            if !file.is_empty() && !file.ends_with('\n') {
                text.push('\n');
            }
        }
        Ok(Combined {
            index: file::Index::new(&text),
            starts,
            found: Mutex::default(),
        })
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
        let mut found = self.found.lock().unwrap_or_else(|e| e.into_inner());
        found
            .entry(name)
            .or_insert_with_key(|name| self.index.entries(name))
            .clone()
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

    #[test]
    fn the_files_are_read_again_only_when_one_changed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("known_hosts");
        let files = [path.clone(), dir.path().join("missing")];
        let then = SystemTime::now() - Duration::from_secs(60);
        write_at(&path, &format!("h {KEY}\n"), then);
        let first = Combined::read(&files).expect("read");
        let again = Combined::read(&files).expect("read");
        assert!(Arc::ptr_eq(&first, &again), "unchanged: not read again");
        // Another key of the same length, written later: read again.
        write_at(
            &path,
            &format!("h {OTHER}\n"),
            then + Duration::from_secs(1),
        );
        let changed = Combined::read(&files).expect("read");
        assert!(
            file::key_status(&changed.entries("h", 22), &key(OTHER)) == Status::Known { line: 1 }
        );
    }

    #[test]
    fn a_file_written_in_the_last_second_is_read_again_whatever_its_stamp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("known_hosts");
        let files = [path.clone()];
        let now = SystemTime::now();
        write_at(&path, &format!("h {KEY}\n"), now);
        Combined::read(&files).expect("read");
        // Rewritten within the same tick of the file clock: the same size and time.
        write_at(&path, &format!("h {OTHER}\n"), now);
        let read = Combined::read(&files).expect("read");
        assert_eq!(
            file::key_status(&read.entries("h", 22), &key(OTHER)),
            Status::Known { line: 1 }
        );
    }
}
