//! The process's open-file limit. Every host in flight holds its connection and its log
//! open, so `forks: 500` under the usual soft limit of 1024 would end half-way through a
//! batch in "too many open files", with hosts left between two steps. The soft limit is
//! raised to the hard one at start (as the shell's `ulimit -n hard` would), and forks is
//! clamped to what the limit then allows, before any host is contacted. Hosts waiting for
//! a later batch keep their pre-flight's connection in what is left over (measured when
//! the pre-flight starts: the limit, less the descriptors open then, less the hosts in
//! flight).

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

/// Connections that hosts waiting for their turn may keep open while `forks` hosts run:
/// measured from the limit in force and the descriptors open now.
pub fn spare_for_waiting(forks: usize) -> usize {
    let limit = getrlimit(Resource::RLIMIT_NOFILE).map_or(0, |(soft, _)| soft);
    // Without /proc, the reserve alone stands for what is open.
    let open = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    spare(limit, open, forks)
}

/// Of `limit` descriptors with `open` in use, what is left once `forks` hosts in flight and
/// the reserve have theirs.
fn spare(limit: u64, open: u64, forks: usize) -> usize {
    let in_flight = (forks as u64).saturating_mul(FILES_PER_HOST);
    let left = limit
        .saturating_sub(open)
        .saturating_sub(RESERVED_FILES)
        .saturating_sub(in_flight);
    usize::try_from(left).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_hosts_get_what_the_hosts_in_flight_leave() {
        // 1024 - 20 open - 64 reserved - 200 x 3 in flight.
        assert_eq!(spare(1024, 20, 200), 340);
        assert_eq!(spare(1024, 20, 320), 0);
        assert_eq!(spare(1 << 20, 30, 200), (1 << 20) - 30 - 64 - 600);
        assert!(spare_for_waiting(1) > 0);
    }

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
