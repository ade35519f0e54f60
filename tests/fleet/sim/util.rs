//! Small helpers shared by the launcher and the shims: errors, files, locks, time, processes.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub type Result<T> = std::result::Result<T, String>;

/// Attach a human context to io/serde errors, so a failing simulator says what it was doing.
pub trait Ctx<T> {
    fn ctx(self, what: impl std::fmt::Display) -> Result<T>;
}

impl<T, E: std::fmt::Display> Ctx<T> for std::result::Result<T, E> {
    fn ctx(self, what: impl std::fmt::Display) -> Result<T> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub fn sleep_secs(s: f64) {
    if s > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(s));
    }
}

/// Write via a temporary file and rename, so readers never see half a file (state.json is
/// read without the lock by `curl` and `fleet-sim state`).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    fs::write(&tmp, data).ctx(format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).ctx(format!("renaming {} into place", path.display()))
}

/// An exclusive flock held until dropped. flock (not fcntl) because it is per open file,
/// so it also serialises threads of one test process, and it dies with the holder.
pub struct Lock(#[allow(dead_code)] File);

pub fn lock(path: &Path) -> Result<Lock> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o666)
        .open(path)
        .ctx(format!("opening lock {}", path.display()))?;
    // SAFETY: plain syscall on a valid fd.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    if rc != 0 {
        return Err(format!(
            "flock {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(Lock(f))
}

/// One write(2) with O_APPEND: concurrent writers of the command log never interleave.
pub fn append_line(path: &Path, line: &str) -> Result<()> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o666)
        .open(path)
        .ctx(format!("opening {}", path.display()))?;
    let mut buf = String::with_capacity(line.len() + 1);
    buf.push_str(line);
    buf.push('\n');
    f.write_all(buf.as_bytes())
        .ctx(format!("appending to {}", path.display()))
}

pub fn chown(path: &Path, uid: u32, gid: u32) -> Result<()> {
    let c = CString::new(path.as_os_str().as_bytes()).ctx("path with NUL")?;
    // SAFETY: valid C string.
    let rc = unsafe { libc::lchown(c.as_ptr(), uid, gid) };
    if rc != 0 {
        return Err(format!(
            "chown {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

pub fn chown_r(path: &Path, uid: u32, gid: u32) -> Result<()> {
    chown(path, uid, gid)?;
    let meta = fs::symlink_metadata(path).ctx(format!("stat {}", path.display()))?;
    if meta.is_dir() {
        for e in fs::read_dir(path).ctx(format!("listing {}", path.display()))? {
            let e = e.ctx("reading dir entry")?;
            chown_r(&e.path(), uid, gid)?;
        }
    }
    Ok(())
}

pub struct User {
    pub uid: u32,
    pub gid: u32,
}

pub fn lookup_user(name: &str) -> Option<User> {
    let c = CString::new(name).ok()?;
    // SAFETY: getpwnam returns a pointer to static storage or NULL; we copy out at once.
    unsafe {
        let pw = libc::getpwnam(c.as_ptr());
        if pw.is_null() {
            return None;
        }
        Some(User {
            uid: (*pw).pw_uid,
            gid: (*pw).pw_gid,
        })
    }
}

// ---------------------------------------------------------------- processes

pub fn pid_alive(pid: i32) -> bool {
    // A zombie still answers kill(0); PID 1 here does not reap, so read the state too.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => proc_state(&s)
            .map(|st| st != 'Z' && st != 'X')
            .unwrap_or(false),
        Err(_) => false,
    }
}

fn after_comm(stat: &str) -> Option<&str> {
    stat.rfind(')').map(|i| &stat[i + 1..])
}

fn proc_state(stat: &str) -> Option<char> {
    after_comm(stat)?.trim_start().chars().next()
}

/// (ppid, start time in clock ticks) of a process.
pub fn proc_ppid_start(pid: i32) -> Option<(i32, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest: Vec<&str> = after_comm(&s)?.split_whitespace().collect();
    // rest[0] = state (field 3), so field N is rest[N-3].
    let ppid = rest.get(1)?.parse().ok()?;
    let start = rest.get(19)?.parse().ok()?;
    Some((ppid, start))
}

pub fn proc_comm(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

fn children_map() -> HashMap<i32, Vec<i32>> {
    let mut m: HashMap<i32, Vec<i32>> = HashMap::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) {
                if let Some((ppid, _)) = proc_ppid_start(pid) {
                    m.entry(ppid).or_default().push(pid);
                }
            }
        }
    }
    m
}

pub fn descendants(roots: &[i32]) -> Vec<i32> {
    let m = children_map();
    let mut out = Vec::new();
    let mut stack: Vec<i32> = roots.to_vec();
    let mut seen = HashSet::new();
    while let Some(p) = stack.pop() {
        if let Some(kids) = m.get(&p) {
            for &k in kids {
                if seen.insert(k) {
                    out.push(k);
                    stack.push(k);
                }
            }
        }
    }
    out
}

pub fn kill(pid: i32, sig: i32) {
    // SAFETY: plain syscall; errors (ESRCH) are expected and harmless.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Kill the roots and everything below them. Stops them first so that nothing forks
/// (or gets re-parented out of sight) between the listing and the killing.
pub fn kill_trees(roots: &[i32]) {
    let mut all: HashSet<i32> = HashSet::new();
    for &r in roots {
        if pid_alive(r) {
            kill(r, libc::SIGSTOP);
            all.insert(r);
        }
    }
    loop {
        let now: Vec<i32> = all.iter().copied().collect();
        let mut grew = false;
        for d in descendants(&now) {
            if all.insert(d) {
                kill(d, libc::SIGSTOP);
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    for &p in &all {
        kill(p, libc::SIGKILL);
    }
}

/// Shell single-quoting, for command lines written into sshd_config and logs.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

// ---------------------------------------------------------------- time formatting

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = (z - era * 146_097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe as i64 + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// RFC 3339 with nanoseconds, as docker prints in inspect.
pub fn rfc3339(t: f64) -> String {
    if t <= 0.0 {
        return "0001-01-01T00:00:00Z".into();
    }
    let secs = t.floor() as i64;
    let nanos = ((t - secs as f64) * 1e9) as u64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86400));
    let sod = secs.rem_euclid(86400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// docker's "2 hours ago" style durations.
pub fn human_ago(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86400),
    }
}

/// Deterministic pseudo-digest (FNV-1a based) for image and container ids.
pub fn hex_id(seed: &str) -> String {
    let mut out = String::with_capacity(64);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for round in 0u8..4 {
        for b in seed.bytes().chain([round]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        out.push_str(&format!("{h:016x}"));
    }
    out
}

pub fn unique_seed() -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{t}", std::process::id())
}

/// A timestamp as PostgreSQL prints `timestamp without time zone`.
pub fn pg_timestamp(t: f64) -> String {
    let s = rfc3339(t);
    // 2024-05-01T10:11:12.123456789Z -> 2024-05-01 10:11:12.123456
    let s = s.trim_end_matches('Z').replacen('T', " ", 1);
    match s.find('.') {
        Some(i) => s[..(i + 7).min(s.len())].to_string(),
        None => s,
    }
}
