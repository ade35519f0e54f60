//! The per-host command log: `<host dir>/commands.log`, JSON lines, a `start` and an `end`
//! record per command, so tests can prove ordering and concurrency across hosts.

use crate::util;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

pub struct Entry {
    log: PathBuf,
    pub id: String,
    kind: String,
    cmd: String,
}

pub fn log_path(host_dir: &Path) -> PathBuf {
    host_dir.join("commands.log")
}

fn micros(t: f64) -> f64 {
    (t * 1e6).round() / 1e6
}

fn write(log: &Path, v: &Value) {
    // The log is evidence for tests, but a command must not fail because of it: report
    // and go on.
    if let Err(e) = util::append_line(log, &v.to_string()) {
        eprintln!("fleet-sim: cannot write command log: {e}");
    }
}

pub fn start(host_dir: &Path, kind: &str, cmd: &str) -> Entry {
    let id = format!(
        "{}-{}",
        std::process::id(),
        util::hex_id(&util::unique_seed())[..8].to_owned()
    );
    let parent = std::env::var("FLEET_SESSION_ID").ok();
    let e = Entry {
        log: log_path(host_dir),
        id,
        kind: kind.into(),
        cmd: cmd.into(),
    };
    let mut v = json!({
        "ev": "start", "id": e.id, "kind": e.kind, "cmd": e.cmd,
        "t": micros(util::now()), "pid": std::process::id(),
    });
    if let Some(p) = parent {
        v["parent"] = json!(p);
    }
    write(&e.log, &v);
    e
}

impl Entry {
    fn end_with(&self, extra: Value) {
        let mut v = json!({
            "ev": "end", "id": self.id, "kind": self.kind, "cmd": self.cmd,
            "t": micros(util::now()), "pid": std::process::id(),
        });
        if let (Some(m), Value::Object(x)) = (v.as_object_mut(), extra) {
            m.extend(x);
        }
        write(&self.log, &v);
    }
    pub fn end_rc(&self, rc: i32) {
        self.end_with(json!({ "rc": rc }));
    }
    pub fn end_signal(&self, sig: i32) {
        self.end_with(json!({ "signal": signal_name(sig) }));
    }
    pub fn end_dropped(&self) {
        self.end_with(json!({ "rc": 255, "dropped": true }));
    }
}

pub fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGTERM => "TERM".into(),
        libc::SIGHUP => "HUP".into(),
        libc::SIGINT => "INT".into(),
        libc::SIGKILL => "KILL".into(),
        libc::SIGPIPE => "PIPE".into(),
        libc::SIGQUIT => "QUIT".into(),
        libc::SIGUSR1 => "USR1".into(),
        libc::SIGUSR2 => "USR2".into(),
        libc::SIGABRT => "ABRT".into(),
        libc::SIGSEGV => "SEGV".into(),
        libc::SIGALRM => "ALRM".into(),
        n => format!("{n}"),
    }
}
