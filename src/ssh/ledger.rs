//! The host keys a session met that the operator must hear about once, for the whole
//! fleet rather than host by host: keys not in known_hosts (refused), and keys recorded
//! under `--host-key-checking accept-new`.

use std::path::PathBuf;
use std::sync::Mutex;

use crate::mutex::lock;

/// A host refused for a key known_hosts does not record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownHostKey {
    /// The inventory name.
    pub host: String,
    /// What ssh-keyscan must be given: the address and port connected to.
    pub hostname: String,
    pub port: u16,
    /// The name looked up: `host` or `[host]:port`.
    pub key_host: String,
    pub fingerprint: String,
}

/// A key recorded in known_hosts under accept-new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedHostKey {
    pub host: String,
    pub key_host: String,
    pub fingerprint: String,
}

/// What the session's connections found, each host key once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostKeyReport {
    pub known_hosts: PathBuf,
    pub unknown: Vec<UnknownHostKey>,
    pub learned: Vec<LearnedHostKey>,
}

/// Each key is told once: what was taken is remembered, not told again when a later
/// connection (the run after its pre-flight) meets it again.
#[derive(Debug, Default)]
pub(crate) struct Ledger(Mutex<(HostKeyReport, Vec<String>)>);

impl Ledger {
    pub(crate) fn new(known_hosts: PathBuf) -> Self {
        Ledger(Mutex::new((
            HostKeyReport {
                known_hosts,
                ..Default::default()
            },
            Vec::new(),
        )))
    }

    fn with<T>(&self, f: impl FnOnce(&mut HostKeyReport, &mut Vec<String>) -> T) -> T {
        let mut guard = lock(&self.0);
        let (report, told) = &mut *guard;
        f(report, told)
    }

    pub(crate) fn unknown(&self, key: UnknownHostKey) {
        self.with(|r, told| {
            let seen = r.unknown.iter().any(|k| k.key_host == key.key_host);
            if !seen && !told.contains(&key.key_host) {
                r.unknown.push(key);
            }
        });
    }

    pub(crate) fn learned(&self, key: LearnedHostKey) {
        self.with(|r, told| {
            let seen = r.learned.iter().any(|k| k.key_host == key.key_host);
            if !seen && !told.contains(&key.key_host) {
                r.learned.push(key);
            }
        });
    }

    /// What was found since the last time, which is then told.
    pub(crate) fn take(&self) -> HostKeyReport {
        self.with(|r, told| {
            told.extend(r.unknown.iter().map(|k| k.key_host.clone()));
            told.extend(r.learned.iter().map(|k| k.key_host.clone()));
            HostKeyReport {
                known_hosts: r.known_hosts.clone(),
                unknown: std::mem::take(&mut r.unknown),
                learned: std::mem::take(&mut r.learned),
            }
        })
    }
}
