//! Fault injection: rules in `<host dir>/faults.json` that make a matching command fail,
//! hang, run slowly or drop the SSH connection. See tests/fleet/README.md.

use crate::log::Entry;
use crate::state;
use crate::util::{self, Ctx, Result};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct Rule {
    /// Substring of the command line (the SSH command, or a shim's argv joined by spaces).
    #[serde(rename = "match")]
    pub pattern: String,
    /// fail | hang | slow | drop
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rc: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// How many matches the rule applies to; absent = every match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
    /// session | shim | any (default): where the rule is checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Only while sl-app serves this version (`v4.66.0`): a new version whose `/health`
    /// fails however often it is polled, while the old one answers, whatever the timing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<String>,
}

pub fn faults_path(host_dir: &Path) -> PathBuf {
    host_dir.join("faults.json")
}

pub fn validate(r: &Rule) -> Result<()> {
    match r.action.as_str() {
        "fail" | "hang" | "drop" => Ok(()),
        "slow" if r.seconds.is_some() => Ok(()),
        "slow" => Err("a slow rule needs seconds".into()),
        a => Err(format!(
            "unknown fault action {a:?} (fail, hang, slow, drop)"
        )),
    }?;
    match r.scope.as_deref() {
        None | Some("any") | Some("session") | Some("shim") => Ok(()),
        Some(s) => Err(format!("unknown fault scope {s:?} (session, shim, any)")),
    }
}

pub fn read_rules(host_dir: &Path) -> Result<Vec<Rule>> {
    let p = faults_path(host_dir);
    match fs::read_to_string(&p) {
        Ok(s) if s.trim().is_empty() => Ok(Vec::new()),
        Ok(s) => serde_json::from_str(&s).ctx(format!("parsing {}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("reading {}: {e}", p.display())),
    }
}

pub fn write_rules(host_dir: &Path, rules: &[Rule]) -> Result<()> {
    let s = serde_json::to_string_pretty(rules).ctx("serialising faults")?;
    util::write_atomic(&faults_path(host_dir), s.as_bytes())
}

pub fn add_rule(host_dir: &Path, rule: Rule) -> Result<()> {
    validate(&rule)?;
    let _l = util::lock(&host_dir.join(".faults.lock"))?;
    let mut rules = read_rules(host_dir)?;
    rules.push(rule);
    write_rules(host_dir, &rules)
}

pub fn clear(host_dir: &Path) -> Result<()> {
    let _l = util::lock(&host_dir.join(".faults.lock"))?;
    match fs::remove_file(faults_path(host_dir)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("clearing faults: {e}")),
        _ => Ok(()),
    }
}

/// The first rule matching `cmd` in `scope`, spending one of its `times`.
pub fn take(host_dir: &Path, scope: &str, cmd: &str) -> Option<Rule> {
    // Fast path: most commands run on hosts without faults.
    if !faults_path(host_dir).exists() {
        return None;
    }
    let _l = util::lock(&host_dir.join(".faults.lock")).ok()?;
    let mut rules = match read_rules(host_dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fleet-sim: ignoring faults: {e}");
            return None;
        }
    };
    // Read once, and only for a rule that asks: most rules hold whatever the host serves.
    let serving = std::cell::OnceCell::new();
    let serves = |version: &str| {
        let now = serving.get_or_init(|| state::load(host_dir).ok()?.serving_version());
        now.as_deref() == Some(version)
    };
    let i = rules.iter().position(|r| {
        let s = r.scope.as_deref().unwrap_or("any");
        (s == "any" || s == scope)
            && cmd.contains(&r.pattern)
            && r.times != Some(0)
            && r.serving.as_deref().is_none_or(serves)
    })?;
    let rule = rules[i].clone();
    if let Some(t) = rules[i].times {
        if t <= 1 {
            rules.remove(i);
        } else {
            rules[i].times = Some(t - 1);
        }
        if let Err(e) = write_rules(host_dir, &rules) {
            eprintln!("fleet-sim: cannot persist fault count: {e}");
        }
    }
    Some(rule)
}

/// Carry out a fault. Returns only for `slow` (the command then runs normally).
pub fn apply(rule: &Rule, entry: &Entry) {
    match rule.action.as_str() {
        "fail" => {
            let rc = rule.rc.unwrap_or(1);
            if let Some(o) = &rule.stdout {
                print_nl(o, false);
            }
            print_nl(
                rule.stderr
                    .as_deref()
                    .unwrap_or("fleet-sim: injected failure"),
                true,
            );
            entry.end_rc(rc);
            std::process::exit(rc);
        }
        "slow" => {
            if let Some(sig) = wait_signal(Some(rule.seconds.unwrap_or(1.0))) {
                entry.end_signal(sig);
                die_by_signal(sig);
            }
        }
        "hang" => {
            let sig = loop {
                if let Some(s) = wait_signal(None) {
                    break s;
                }
            };
            entry.end_signal(sig);
            die_by_signal(sig);
        }
        "drop" => {
            entry.end_dropped();
            drop_connection();
        }
        _ => {}
    }
}

fn print_nl(s: &str, err: bool) {
    use std::io::Write;
    let mut s = s.to_string();
    if !s.ends_with('\n') {
        s.push('\n');
    }
    if err {
        let _ = std::io::stderr().write_all(s.as_bytes());
    } else {
        let _ = std::io::stdout().write_all(s.as_bytes());
        let _ = std::io::stdout().flush();
    }
}

/// Kill the per-connection sshd above us, then our own process group, so the client sees
/// the connection lost and nothing of the command keeps running.
pub fn drop_connection() -> ! {
    let mut pid = std::process::id() as i32;
    for _ in 0..32 {
        let Some((ppid, _)) = util::proc_ppid_start(pid) else {
            break;
        };
        if ppid <= 1 {
            break;
        }
        if util::proc_comm(ppid).as_deref() == Some("sshd") {
            util::kill(ppid, libc::SIGKILL);
            break;
        }
        pid = ppid;
    }
    // SAFETY: plain syscalls.
    unsafe {
        libc::killpg(libc::getpgrp(), libc::SIGKILL);
    }
    std::process::exit(255)
}

pub const TERMINATING: [i32; 3] = [libc::SIGTERM, libc::SIGHUP, libc::SIGINT];

pub fn sigset(sigs: &[i32]) -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in sigs {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

pub fn block(sigs: &[i32]) {
    let set = sigset(sigs);
    // SAFETY: valid sigset; single-threaded program.
    unsafe {
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Wait for SIGTERM/SIGHUP/SIGINT up to `timeout` (None = forever); the signal number if
/// one came.
pub fn wait_signal(timeout: Option<f64>) -> Option<i32> {
    block(&TERMINATING);
    let set = sigset(&TERMINATING);
    let deadline = timeout.map(|t| util::now() + t);
    loop {
        let left = match deadline {
            Some(d) => {
                let l = d - util::now();
                if l <= 0.0 {
                    return None;
                }
                l
            }
            None => 3600.0,
        };
        let ts = libc::timespec {
            tv_sec: left.floor() as libc::time_t,
            tv_nsec: ((left - left.floor()) * 1e9) as libc::c_long,
        };
        // SAFETY: valid set and timespec.
        let s = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
        if s > 0 {
            return Some(s);
        }
    }
}

/// End the entry and die of a terminating signal that came while they were blocked;
/// otherwise unblock them, so the command dies of the next one as the real tool would.
pub fn let_signals_in(entry: &Entry) {
    let set = sigset(&TERMINATING);
    let now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid set and timespec; a zero timeout only takes a pending signal.
    let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &now) };
    if sig > 0 {
        entry.end_signal(sig);
        die_by_signal(sig);
    }
    // SAFETY: valid sigset.
    unsafe {
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}

/// Exit the way the signal would have killed us, so the parent (and sshd) see a signal.
pub fn die_by_signal(sig: i32) -> ! {
    // SAFETY: resetting a disposition and raising; falls back to an exit code.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        let set = sigset(&[sig]);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(sig);
    }
    std::process::exit(128 + sig)
}

/// Check and apply faults for a command about to run; the log entry is ended by the fault
/// when it ends the command.
pub fn check(host_dir: &Path, scope: &str, cmd: &str, entry: &Entry) {
    if let Some(rule) = take(host_dir, scope, cmd) {
        apply(&rule, entry);
    }
}
