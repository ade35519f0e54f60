//! Host key verification against an OpenSSH known_hosts file.
//!
//! `known_hosts_file` reads the file as OpenSSH does; this module decides what its
//! verdict means under the chosen policy and records it, so that a refused handshake can be
//! reported with the file, line and fingerprint.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use russh::keys::{Algorithm, Certificate, HashAlg, PublicKey};

use crate::mutex::lock;

use super::certificate::{self, CertProblem};
use super::known_hosts_file::{self as file, Marker, Status};
use super::known_hosts_read::Combined;

/// `--host-key-checking`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostKeyChecking {
    /// Only keys already in known_hosts are accepted (the default).
    #[default]
    Strict,
    /// An unknown host's key is accepted and recorded; a changed key is still refused.
    AcceptNew,
    /// Any key is accepted, nothing is recorded. The CLI must warn on every run.
    Off,
}

impl std::str::FromStr for HostKeyChecking {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "strict" | "yes" => Ok(HostKeyChecking::Strict),
            "accept-new" => Ok(HostKeyChecking::AcceptNew),
            "off" | "no" => Ok(HostKeyChecking::Off),
            other => Err(format!(
                "unknown host key checking {other:?}: expected strict, accept-new or off"
            )),
        }
    }
}

/// What the check found, kept for the error message when the handshake is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Known,
    /// Recorded under accept-new, with this fingerprint.
    Learned {
        fingerprint: String,
    },
    Unchecked,
    Unknown {
        fingerprint: String,
    },
    Changed {
        file: PathBuf,
        line: usize,
        fingerprint: String,
    },
    /// The key is marked `@revoked` at this line (OpenSSH: "REVOKED HOST KEY DETECTED").
    Revoked {
        file: PathBuf,
        line: usize,
        fingerprint: String,
    },
    /// A CA trusted for the host (at this line) signed the host's certificate, but the
    /// certificate is not valid for it, and its plain key is not recorded either.
    CertificateInvalid {
        file: PathBuf,
        line: usize,
        problem: CertProblem,
    },
    /// The host presents a certificate whose CA known_hosts does not trust for it, and its
    /// plain key is not recorded.
    CertificateUntrusted {
        ca_fingerprint: String,
    },
    /// Keys of other types are recorded for the host (at these lines), not this one.
    OtherType {
        file: PathBuf,
        lines: Vec<usize>,
        fingerprint: String,
    },
    Error {
        detail: String,
    },
}

impl Verdict {
    pub(crate) fn accepted(&self) -> bool {
        matches!(
            self,
            Verdict::Known | Verdict::Learned { .. } | Verdict::Unchecked
        )
    }
}

/// Appends to known_hosts are serialised within the process: 200 hosts learned at once
/// must not interleave their lines.
static LEARN_LOCK: Mutex<()> = Mutex::new(());

pub(crate) fn fingerprint(key: &PublicKey) -> String {
    format!("{} {}", key.algorithm(), key.fingerprint(HashAlg::Sha256))
}

/// `host` or `[host]:port`, as OpenSSH writes it.
pub(crate) fn key_host(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

pub(crate) fn check(
    policy: HostKeyChecking,
    files: &[PathBuf],
    host: &str,
    port: u16,
    key: &PublicKey,
) -> Verdict {
    let (status, kh) = match Combined::read(files) {
        Ok(kh) => (kh.status(host, port, |e| file::key_status(e, key)), kh),
        Err(_) if policy == HostKeyChecking::Off => return Verdict::Unchecked,
        Err(detail) => return Verdict::Error { detail },
    };
    let fingerprint = || fingerprint(key);
    match status {
        // Refused under every policy, `off` included (OpenSSH's StrictHostKeyChecking=no
        // only warns): the operator said this key must not be trusted, and `off` is meant
        // to get past unknown keys, not stolen ones.
        Status::Revoked { line } => {
            let (file, line) = kh.place(line);
            Verdict::Revoked {
                file,
                line,
                fingerprint: fingerprint(),
            }
        }
        _ if policy == HostKeyChecking::Off => Verdict::Unchecked,
        Status::Known { .. } => Verdict::Known,
        Status::Changed { line } => {
            let (file, line) = kh.place(line);
            Verdict::Changed {
                file,
                line,
                fingerprint: fingerprint(),
            }
        }
        Status::OtherType { lines } => {
            let places: Vec<(PathBuf, usize)> = lines.iter().map(|l| kh.place(*l)).collect();
            let file = places.first().map(|p| p.0.clone()).unwrap_or_default();
            Verdict::OtherType {
                lines: places
                    .into_iter()
                    .filter(|(f, _)| *f == file)
                    .map(|p| p.1)
                    .collect(),
                file,
                fingerprint: fingerprint(),
            }
        }
        Status::New if policy == HostKeyChecking::AcceptNew => learn_new(files, host, port, key),
        Status::New => Verdict::Unknown {
            fingerprint: fingerprint(),
        },
    }
}

fn learn_new(files: &[PathBuf], host: &str, port: u16, key: &PublicKey) -> Verdict {
    let Some(path) = files.first() else {
        return Verdict::Error {
            detail: "no known_hosts file to record the key in".into(),
        };
    };
    let _guard = lock(&LEARN_LOCK);
    // Another connection may have learned it while we waited.
    if let Ok(kh) = Combined::read(files) {
        if let Status::Known { .. } = kh.status(host, port, |e| file::key_status(e, key)) {
            return Verdict::Known;
        }
    }
    match learn(path, host, port, key) {
        Ok(()) => Verdict::Learned {
            fingerprint: fingerprint(key),
        },
        Err(e) => Verdict::Error {
            detail: format!("cannot record the new key in {}: {e}", path.display()),
        },
    }
}

/// A host certificate, as OpenSSH's `check_host_key` takes one: revoked (its key or its CA)
/// is refused; signed by an `@cert-authority` for the host and valid for it (type, time,
/// principals, critical options, signature) is known; otherwise its plain key is checked as
/// any key is. One difference: a certificate from a trusted CA that is not valid is reported
/// as such rather than its key being learned under accept-new.
pub(crate) fn check_certificate(
    policy: HostKeyChecking,
    files: &[PathBuf],
    host: &str,
    port: u16,
    cert: &Certificate,
) -> Verdict {
    let plain = PublicKey::new(cert.public_key().clone(), "");
    let (status, kh) = match Combined::read(files) {
        Ok(kh) => (
            kh.status(host, port, |e| file::certificate_status(e, cert)),
            kh,
        ),
        Err(_) if policy == HostKeyChecking::Off => return Verdict::Unchecked,
        Err(detail) => return Verdict::Error { detail },
    };
    let invalid = match status {
        Status::Revoked { line } => {
            let (file, line) = kh.place(line);
            return Verdict::Revoked {
                file,
                line,
                fingerprint: fingerprint(&plain),
            };
        }
        _ if policy == HostKeyChecking::Off => return Verdict::Unchecked,
        Status::Known { line } => {
            match certificate::check_host(cert, &host.to_lowercase(), certificate::now()) {
                Ok(()) => return Verdict::Known,
                Err(problem) => Some((kh.place(line), problem)),
            }
        }
        _ => None,
    };
    let plain_status = kh.status(host, port, |e| file::key_status(e, &plain));
    match (invalid, plain_status) {
        (_, Status::Known { .. }) => Verdict::Known,
        (Some(((file, line), problem)), _) => Verdict::CertificateInvalid {
            file,
            line,
            problem,
        },
        (None, Status::New) if policy == HostKeyChecking::Strict => Verdict::CertificateUntrusted {
            ca_fingerprint: fingerprint(&PublicKey::new(cert.signature_key().clone(), "")),
        },
        (None, _) => check(policy, files, host, port, &plain),
    }
}

/// What known_hosts records for a host that shapes the key exchange with it, from one
/// read of the files.
pub(crate) struct Negotiation {
    /// The host key algorithms to ask for, when not the default order.
    pub(crate) preferred: Option<Vec<Algorithm>>,
    /// Whether to ask for host certificates.
    pub(crate) certificates: bool,
}

pub(crate) fn negotiation(files: &[PathBuf], host: &str, port: u16) -> Negotiation {
    match Combined::read(files) {
        Ok(kh) => Negotiation {
            preferred: preferred_host_key_algorithms(&kh, host, port),
            certificates: has_certificate_authority(&kh, host, port),
        },
        Err(_) => Negotiation {
            preferred: None,
            certificates: false,
        },
    }
}

/// Whether known_hosts has an `@cert-authority` line for the host: then host certificates
/// are asked for (OpenSSH asks for them always, and falls back to the plain key; asking
/// only when a CA could vouch keeps every other host's negotiation as it was).
fn has_certificate_authority(kh: &Combined, host: &str, port: u16) -> bool {
    [port, 22].iter().any(|p| {
        kh.entries(host, *p)
            .iter()
            .any(|e| e.marker == Marker::CertAuthority)
    })
}

/// The host key algorithms to ask the host for, with the types already recorded for it
/// first, as OpenSSH does: a host first met with an ECDSA key keeps being checked against
/// that key rather than reported unknown for presenting its Ed25519 one. `None`: the
/// default order does (nothing recorded, or the first preference is recorded).
fn preferred_host_key_algorithms(kh: &Combined, host: &str, port: u16) -> Option<Vec<Algorithm>> {
    let entries = kh.entries(host, port);
    let known: Vec<&PublicKey> = entries
        .iter()
        .filter(|e| e.marker == Marker::Key)
        .map(|e| &e.key)
        .collect();
    let recorded = |a: &Algorithm| {
        known.iter().any(|k| {
            let rsa = |x: &Algorithm| matches!(x, Algorithm::Rsa { .. });
            a == &k.algorithm() || (rsa(a) && rsa(&k.algorithm()))
        })
    };
    let default = russh::Preferred::DEFAULT.key;
    if known.is_empty() || default.first().is_some_and(recorded) {
        return None;
    }
    let (mut first, rest): (Vec<Algorithm>, Vec<Algorithm>) =
        default.iter().cloned().partition(|a| recorded(a));
    first.extend(rest);
    Some(first)
}

/// Appends `[host]:port alg key` (russh's own version starts an empty file with a blank
/// line).
fn learn(path: &Path, host: &str, port: u16, key: &PublicKey) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let existing = std::fs::read(path).unwrap_or_default();
    let mut line = String::new();
    if existing.last().is_some_and(|b| *b != b'\n') {
        line.push('\n');
    }
    let encoded = key
        .to_openssh()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    line.push_str(&key_host(host, port));
    line.push(' ');
    line.push_str(encoded.trim_end());
    line.push('\n');
    // One write on an O_APPEND file: lines of concurrent writers do not interleave.
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(line.as_bytes())
}

/// The default known_hosts file, `~/.ssh/known_hosts`.
pub fn default_known_hosts() -> PathBuf {
    super::home_dir().join(".ssh").join("known_hosts")
}

#[cfg(test)]
mod tests {
    use super::super::known_hosts_file::test_keys::{KEY, OTHER};
    use super::*;

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).expect("test key")
    }

    #[test]
    fn verdicts_under_each_policy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("known_hosts");
        let files = [path.clone()];
        std::fs::write(&path, format!("# comment\n\n[h]:2222 {KEY}\n")).expect("write");
        let k = key(KEY);
        let o = key(OTHER);
        assert_eq!(
            check(HostKeyChecking::Strict, &files, "h", 2222, &k),
            Verdict::Known
        );
        assert!(matches!(
            check(HostKeyChecking::Strict, &files, "h", 2222, &o),
            Verdict::Changed { line: 3, .. }
        ));
        assert!(matches!(
            check(HostKeyChecking::AcceptNew, &files, "h", 2222, &o),
            Verdict::Changed { .. }
        ));
        assert!(matches!(
            check(HostKeyChecking::Strict, &files, "g", 2222, &k),
            Verdict::Unknown { .. }
        ));
        assert_eq!(
            check(HostKeyChecking::Off, &files, "g", 22, &o),
            Verdict::Unchecked
        );
        assert_eq!(
            check(HostKeyChecking::AcceptNew, &files, "g", 22, &o),
            Verdict::Learned {
                fingerprint: fingerprint(&o)
            }
        );
        assert_eq!(
            check(HostKeyChecking::Strict, &files, "g", 22, &o),
            Verdict::Known
        );
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.ends_with(&format!("g {OTHER}\n")), "{text}");
    }

    #[test]
    fn a_key_of_another_type_is_refused_even_with_accept_new() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("known_hosts");
        let files = [path.clone()];
        let ecdsa = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg=";
        std::fs::write(&path, format!("# c\n[h]:2222 {ecdsa}\n")).expect("write");
        for policy in [HostKeyChecking::Strict, HostKeyChecking::AcceptNew] {
            assert!(matches!(
                check(policy, &files, "h", 2222, &key(KEY)),
                Verdict::OtherType { ref lines, .. } if lines == &vec![2]
            ));
        }
        // ...and asked for first, so that the host presents the recorded one.
        let order = negotiation(&files, "h", 2222).preferred.expect("reordered");
        assert_eq!(
            order[0],
            Algorithm::Ecdsa {
                curve: russh::keys::EcdsaCurve::NistP256
            }
        );
        assert_eq!(order.len(), russh::Preferred::DEFAULT.key.len());
        assert!(negotiation(&files, "other", 22).preferred.is_none());
        std::fs::write(&path, format!("[h]:2222 {KEY}\n[h]:2222 {ecdsa}\n")).expect("write");
        assert!(negotiation(&files, "h", 2222).preferred.is_none());
    }

    #[test]
    fn global_files_are_read_after_the_users_and_lines_are_named_in_their_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (user, global) = (dir.path().join("user"), dir.path().join("global"));
        std::fs::write(&user, format!("# mine\nh {KEY}")).expect("write");
        std::fs::write(&global, format!("# fleet\n\n@revoked * {KEY}\n")).expect("write");
        let files = [user.clone(), dir.path().join("missing"), global.clone()];
        assert_eq!(
            check(HostKeyChecking::Strict, &files, "h", 22, &key(KEY)),
            Verdict::Revoked {
                file: global,
                line: 3,
                fingerprint: fingerprint(&key(KEY))
            }
        );
        assert!(matches!(
            check(HostKeyChecking::Strict, &files, "h", 22, &key(OTHER)),
            Verdict::Changed { file, line: 2, .. } if file == user
        ));
    }

    #[test]
    fn missing_file_means_unknown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nope");
        let files = [path.clone()];
        assert!(matches!(
            check(HostKeyChecking::Strict, &files, "h", 22, &key(KEY)),
            Verdict::Unknown { .. }
        ));
    }

    #[test]
    fn policy_parses() {
        assert_eq!("accept-new".parse(), Ok(HostKeyChecking::AcceptNew));
        assert!("maybe".parse::<HostKeyChecking>().is_err());
    }
}
