//! OpenSSH certificates (PROTOCOL.certkeys) checked as OpenSSH checks them
//! (`sshkey_cert_check_authority`): type, validity window, principals, critical options,
//! and the CA's signature.
//!
//! ssh-key's `Certificate::validate_at` verifies the signature, the CA and the time window
//! but says only "invalid"; the type, the principals and the critical options are not
//! checked there. So the checks that name a reason are done here first, then ssh-key's for
//! the signature. Pure: the time is an argument.

use russh::keys::ssh_key::certificate::CertType;
use russh::keys::{Certificate, HashAlg};

/// Why a certificate is not valid for the use asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CertProblem {
    #[error("it is a {found} certificate, not a {wanted} certificate")]
    WrongType {
        found: &'static str,
        wanted: &'static str,
    },
    #[error("it is not valid before {}", unix_time(*.valid_after))]
    NotYetValid { valid_after: u64 },
    #[error("it expired at {}", unix_time(*.valid_before))]
    Expired { valid_before: u64 },
    #[error("{name:?} is not among its principals ({})", .principals.join(", "))]
    Principal {
        name: String,
        principals: Vec<String>,
    },
    #[error("it has no principals, and a user certificate needs the login's")]
    NoPrincipals,
    #[error("it has critical options OpenSSH does not accept here ({})", .names.join(", "))]
    CriticalOptions { names: Vec<String> },
    #[error("its signature by the CA does not verify")]
    Signature,
}

fn unix_time(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map_or_else(|| secs.to_string(), |t| t.to_string())
}

fn type_name(t: CertType) -> &'static str {
    if t.is_host() {
        "host"
    } else {
        "user"
    }
}

/// A host certificate for `hostname` (lowercase, without port), at `now` (Unix seconds).
/// As OpenSSH 9.2's `check_host_cert`: no principals means any host; a principal is a name,
/// compared literally (its ssh refuses a `127.0.0.*` principal for 127.0.0.1); any
/// critical option refuses it.
pub(crate) fn check_host(cert: &Certificate, hostname: &str, now: u64) -> Result<(), CertProblem> {
    check_common(cert, CertType::Host, now)?;
    let principals = cert.valid_principals();
    if !principals.is_empty() && !principals.iter().any(|p| p == hostname) {
        return Err(CertProblem::Principal {
            name: hostname.to_string(),
            principals: principals.to_vec(),
        });
    }
    if !cert.critical_options().is_empty() {
        return Err(CertProblem::CriticalOptions {
            names: cert.critical_options().keys().cloned().collect(),
        });
    }
    verify_signature(cert, now)
}

/// A user certificate for logging in as `user`, as sshd checks one signed by a
/// `TrustedUserCAKeys` CA: the user must be a principal, literally. Its critical options
/// (`force-command`, `source-address`) are the server's to apply.
pub(crate) fn check_user(cert: &Certificate, user: &str, now: u64) -> Result<(), CertProblem> {
    check_common(cert, CertType::User, now)?;
    let principals = cert.valid_principals();
    if principals.is_empty() {
        return Err(CertProblem::NoPrincipals);
    }
    if !principals.iter().any(|p| p == user) {
        return Err(CertProblem::Principal {
            name: user.to_string(),
            principals: principals.to_vec(),
        });
    }
    verify_signature(cert, now)
}

fn check_common(cert: &Certificate, wanted: CertType, now: u64) -> Result<(), CertProblem> {
    if cert.cert_type() != wanted {
        return Err(CertProblem::WrongType {
            found: type_name(cert.cert_type()),
            wanted: type_name(wanted),
        });
    }
    if now < cert.valid_after() {
        return Err(CertProblem::NotYetValid {
            valid_after: cert.valid_after(),
        });
    }
    if now >= cert.valid_before() {
        return Err(CertProblem::Expired {
            valid_before: cert.valid_before(),
        });
    }
    Ok(())
}

/// The CA's signature, through ssh-key's validation against the CA the certificate names
/// (whether that CA is trusted is the caller's question, answered by known_hosts).
fn verify_signature(cert: &Certificate, now: u64) -> Result<(), CertProblem> {
    let ca = cert.signature_key().fingerprint(HashAlg::Sha256);
    cert.validate_at(now, [&ca])
        .map_err(|_| CertProblem::Signature)
}

/// Now, in Unix seconds.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ssh-keygen -s ca -I web -h -n 'web*.example.com,db1' -V 20200101:20300101 host.pub`.
    const HOST_CERT: &str = include_str!("testdata/host-cert.pub");
    /// `ssh-keygen -s ca -I alice -n alice,deploy -V 20200101:20300101 -O force-command=true
    /// user.pub`.
    const USER_CERT: &str = include_str!("testdata/user-cert.pub");

    fn cert(text: &str) -> Certificate {
        Certificate::from_openssh(text.trim()).expect("certificate")
    }

    /// 2026-01-01, inside both certificates' windows.
    const NOW: u64 = 1_767_225_600;

    #[test]
    fn host_certificates() {
        let c = cert(HOST_CERT);
        assert_eq!(check_host(&c, "db1", NOW), Ok(()));
        assert!(matches!(
            check_host(&c, "web1.example.com", NOW),
            Err(CertProblem::Principal { .. })
        ));
        assert!(matches!(
            check_host(&c, "db2", NOW),
            Err(CertProblem::Principal { .. })
        ));
        assert!(matches!(
            check_host(&c, "db1", 1_900_000_000),
            Err(CertProblem::Expired { .. })
        ));
        assert!(matches!(
            check_host(&c, "db1", 1_500_000_000),
            Err(CertProblem::NotYetValid { .. })
        ));
        assert_eq!(
            check_user(&c, "db1", NOW),
            Err(CertProblem::WrongType {
                found: "host",
                wanted: "user"
            })
        );
        let msg = check_host(&c, "db1", 1_900_000_000)
            .unwrap_err()
            .to_string();
        assert_eq!(msg, "it expired at 2030-01-01T00:00:00Z");
    }

    #[test]
    fn user_certificates() {
        let c = cert(USER_CERT);
        assert_eq!(check_user(&c, "deploy", NOW), Ok(()));
        // Principals are literal, and the user's critical options are the server's.
        assert!(matches!(
            check_user(&c, "deplo?", NOW),
            Err(CertProblem::Principal { .. })
        ));
        assert!(matches!(
            check_host(&c, "deploy", NOW),
            Err(CertProblem::WrongType { .. })
        ));
    }

    #[test]
    fn a_tampered_certificate_is_refused() {
        let mut c = cert(HOST_CERT);
        c.set_comment("comments are not signed");
        assert_eq!(check_host(&c, "db1", NOW), Ok(()));
        // Another certificate's signature on this one's contents.
        let other = cert(USER_CERT);
        let forged = Certificate::from_bytes(&splice_signature(&c, &other)).expect("forged");
        assert_eq!(check_host(&forged, "db1", NOW), Err(CertProblem::Signature));
    }

    /// `c` with `other`'s signature: the last field of the wire form.
    fn splice_signature(c: &Certificate, other: &Certificate) -> Vec<u8> {
        use russh::keys::ssh_encoding::Encode;
        let mut own = c.to_bytes().expect("bytes");
        let mut sig = Vec::new();
        c.signature().encode(&mut sig).expect("sig");
        own.truncate(own.len() - sig.len() - 4);
        let mut other_sig = Vec::new();
        other
            .signature()
            .encode_prefixed(&mut other_sig)
            .expect("sig");
        own.extend_from_slice(&other_sig);
        own
    }
}
