//! OpenSSH user certificates for authentication: `<identity>-cert.pub` beside a key,
//! `CertificateFile` from the ssh config, and what the ssh-agent holds. Each is offered
//! before its plain key, as OpenSSH does; a refused one is listed with why it would be
//! refused (expired, not for this login) when that can be told from the certificate.

use std::path::{Path, PathBuf};

use russh::keys::{Certificate, PublicKey};

use super::certificate;
use super::known_hosts::fingerprint;

/// The certificates for `key` among `<identity>-cert.pub` (when `identity` is given) and the
/// `CertificateFile`s, first found first; files that are missing, unreadable or for another
/// key are skipped, as OpenSSH skips them.
pub(crate) fn for_key(
    identity: Option<&Path>,
    certificate_files: &[PathBuf],
    key: &PublicKey,
) -> Vec<(PathBuf, Certificate)> {
    let beside = identity.map(|p| {
        let mut s = p.as_os_str().to_owned();
        s.push("-cert.pub");
        PathBuf::from(s)
    });
    let mut found: Vec<(PathBuf, Certificate)> = Vec::new();
    for path in beside.iter().chain(certificate_files) {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        let Ok(cert) = Certificate::from_openssh(text.trim()) else {
            continue;
        };
        if cert.public_key() == key.key_data() && !found.iter().any(|(p, _)| p == path) {
            found.push((path.clone(), cert));
        }
    }
    found
}

/// The "tried:" entry for a certificate offered as `user`: where it came from, its key and
/// CA, and what is wrong with it if anything can be told here.
pub(crate) fn describe(origin: &str, cert: &Certificate, user: &str) -> String {
    let key = PublicKey::new(cert.public_key().clone(), "");
    let ca = PublicKey::new(cert.signature_key().clone(), "");
    let mut text = format!(
        "certificate {origin} ({}, CA {})",
        fingerprint(&key),
        fingerprint(&ca)
    );
    if let Err(problem) = certificate::check_user(cert, user, certificate::now()) {
        text.push_str(&format!(": {problem}"));
    }
    text
}
