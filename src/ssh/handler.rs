//! The russh client handler of one SSH session (one hop), and the state it shares with
//! the connection: the host key verdict and why the session ended.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use russh::client::{self, DisconnectReason};
use russh::keys::PublicKeyOrCertificate;
use tokio_util::sync::CancellationToken;

use crate::mutex::lock;

use super::known_hosts::{self, HostKeyChecking, Verdict};

/// Shared between the handler (inside russh's session task) and the connection.
#[derive(Default)]
pub(crate) struct SessionState {
    verdict: Mutex<Option<Verdict>>,
    end_reason: Mutex<Option<String>>,
    /// Cancelled when the session task has ended, for whatever reason.
    pub(crate) ended: CancellationToken,
}

impl SessionState {
    pub(crate) fn verdict(&self) -> Option<Verdict> {
        lock(&self.verdict).clone()
    }

    /// Why the session ended, if it has.
    pub(crate) fn end_reason(&self) -> Option<String> {
        if !self.ended.is_cancelled() {
            return None;
        }
        Some(
            lock(&self.end_reason)
                .clone()
                .unwrap_or_else(|| "the SSH session ended".to_string()),
        )
    }

    fn set_end_reason(&self, reason: String) {
        let mut slot = lock(&self.end_reason);
        if slot.is_none() {
            *slot = Some(reason);
        }
    }
}

pub(crate) struct ClientHandler {
    pub(crate) state: Arc<SessionState>,
    pub(crate) policy: HostKeyChecking,
    /// The user's known_hosts file (where accept-new records keys), then the global ones.
    pub(crate) known_hosts: Arc<[PathBuf]>,
    /// The name looked up in known_hosts (the resolved HostName, as OpenSSH does) and port.
    pub(crate) key_host: String,
    pub(crate) port: u16,
}

impl Drop for ClientHandler {
    fn drop(&mut self) {
        // The session task owns the handler: it is dropped when the session is over, even
        // when russh could not call `disconnected` (e.g. the socket's shutdown failed).
        self.state.ended.cancel();
    }
}

impl client::Handler for ClientHandler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let verdict = match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => known_hosts::check(
                self.policy,
                &self.known_hosts,
                &self.key_host,
                self.port,
                key,
            ),
            PublicKeyOrCertificate::Certificate(cert) => known_hosts::check_certificate(
                self.policy,
                &self.known_hosts,
                &self.key_host,
                self.port,
                cert,
            ),
        };
        let accepted = verdict.accepted();
        *lock(&self.state.verdict) = Some(verdict);
        Ok(accepted)
    }

    async fn disconnected(
        &mut self,
        reason: DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        let text = match &reason {
            DisconnectReason::ReceivedDisconnect(info) => {
                format!("the host closed the connection ({})", info.message)
            }
            DisconnectReason::Error(russh::Error::KeepaliveTimeout) => {
                "no answer to SSH keepalives: the host or the network is down".to_string()
            }
            DisconnectReason::Error(russh::Error::HUP) => {
                "the connection was closed by the remote side".to_string()
            }
            DisconnectReason::Error(russh::Error::IO(e)) => format!("network error: {e}"),
            DisconnectReason::Error(e) => e.to_string(),
        };
        self.state.set_end_reason(text);
        self.state.ended.cancel();
        match reason {
            DisconnectReason::ReceivedDisconnect(_) => Ok(()),
            DisconnectReason::Error(e) => Err(e),
        }
    }
}
