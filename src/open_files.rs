//! The process's open-file limit. Every host in flight holds its connection and its log
//! open, so `forks: 500` under the usual soft limit of 1024 would end half-way through a
//! batch in "too many open files", with hosts left between two steps. The soft limit is
//! raised to the hard one at start (as the shell's `ulimit -n hard` would), and forks is
//! clamped to what the limit then allows, before any host is contacted.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Files fleetup holds whatever the fleet's size: standard streams, the journal, the
/// runtime's own descriptors, a key file being read, the ssh config.
const RESERVED_FILES: u64 = 64;

/// Files one host in flight may hold at once: its connection, its log, and a second
/// connection while a pause verifies it or a reconnection is tried.
const FILES_PER_HOST: u64 = 3;

/// Raises the soft limit on open files to the hard limit, and returns the soft limit in
/// force afterwards (the old one if it could not be raised).
pub fn raise_open_files() -> u64 {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return RESERVED_FILES + FILES_PER_HOST;
    };
    if soft < hard {
        // An unlimited hard limit is still capped by the kernel's nr_open: try the hard
        // limit, then a million, before keeping the old one.
        for wanted in [hard, 1 << 20] {
            let raised = wanted.min(hard);
            if setrlimit(Resource::RLIMIT_NOFILE, raised, hard).is_ok() {
                return raised;
            }
        }
    }
    soft
}

/// The most hosts that can be in flight at once with `open_files` descriptors.
pub fn max_forks(open_files: u64) -> usize {
    let hosts = open_files.saturating_sub(RESERVED_FILES) / FILES_PER_HOST;
    usize::try_from(hosts).unwrap_or(usize::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forks_fit_the_open_file_limit() {
        assert_eq!(max_forks(1024), 320);
        assert_eq!(max_forks(256), 64);
        // However low the limit, one host at a time still runs.
        assert_eq!(max_forks(10), 1);
        assert!(max_forks(1 << 20) > 300_000);
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let now = raise_open_files();
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        assert_eq!(soft, now);
        assert!(soft == hard || soft == 1 << 20);
    }
}
