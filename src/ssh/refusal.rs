//! A refused host key as the transport's error: what known_hosts said about it, with the
//! file and line the operator must look at.

use std::path::Path;

use super::known_hosts::{self, Verdict};
use crate::transport::TransportError;

/// The error for a handshake the host key check ended; `None` when the key was accepted
/// (or never checked) and the handshake failed for another reason.
pub(crate) fn host_key_error(
    verdict: Verdict,
    host: &str,
    hostname: &str,
    port: u16,
    known_hosts: &Path,
) -> Option<TransportError> {
    let host = host.to_string();
    let key_host = known_hosts::key_host(hostname, port);
    let known_hosts = known_hosts.to_path_buf();
    Some(match verdict {
        Verdict::Known | Verdict::Learned { .. } | Verdict::Unchecked => return None,
        Verdict::Unknown { fingerprint } => TransportError::HostKeyUnknown {
            host,
            key_host,
            hostname: hostname.to_string(),
            port,
            known_hosts,
            fingerprint,
        },
        Verdict::Changed {
            file,
            line,
            fingerprint,
        } => TransportError::HostKeyChanged {
            host,
            key_host,
            known_hosts: file,
            line,
            fingerprint,
        },
        Verdict::Revoked {
            file,
            line,
            fingerprint,
        } => TransportError::HostKeyRevoked {
            host,
            key_host,
            known_hosts: file,
            line,
            fingerprint,
        },
        Verdict::OtherType {
            file,
            lines,
            fingerprint,
        } => TransportError::HostKeyOtherType {
            host,
            key_host,
            known_hosts: file,
            lines,
            fingerprint,
        },
        Verdict::CertificateInvalid {
            file,
            line,
            problem,
        } => TransportError::HostCertificateInvalid {
            host,
            key_host,
            known_hosts: file,
            line,
            reason: problem.to_string(),
        },
        Verdict::CertificateUntrusted { ca_fingerprint } => {
            TransportError::HostCertificateUntrusted {
                host,
                key_host,
                known_hosts,
                ca_fingerprint,
            }
        }
        Verdict::Error { detail } => TransportError::HostKeyCheck {
            host,
            key_host,
            detail,
        },
    })
}
