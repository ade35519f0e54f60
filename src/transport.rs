//! The transport: how the engine reaches a host and runs one command on it.
//!
//! The engine sees three operations, whatever the host:
//! - [`Connector::connect`] opens one [`Connection`] to a host (once per host, reused for
//!   every command of the run);
//! - [`Connection::exec`] runs one command, streaming its stdout and stderr (kept apart) to a
//!   sink as they arrive, and returns how it ended. A command that outlives its timeout, or
//!   whose [`CancellationToken`] is cancelled, is **terminated on the host** before `exec`
//!   returns: that is the "terminate" operation;
//! - [`Connection::close`].
//!
//! A host's connection outlives its pre-flight: [`kept`] holds it until the host's turn.
//!
//! This module is the vocabulary both implementations share ([`crate::ssh`] and [`local`]),
//! with what they do alike: [`termination`] (timeout, cancel, TERM then KILL) and [`sudo`]
//! (become); [`crate::connect`] chooses between them per host.
//!
//! Errors are [`TransportError`]s, each naming the host and saying what to do; their
//! [`ErrorClass`] tells the engine whether the host was **unreachable** (never reached, or
//! lost) or the command **failed** on it.

pub mod kept;
pub mod local;
pub(crate) mod sudo;
pub(crate) mod termination;

use std::path::PathBuf;
use std::time::Duration;

pub use tokio_util::sync::CancellationToken;

/// How the engine reaches a host (`ansible_connection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConnectionKind {
    #[default]
    Ssh,
    /// Run on the controller itself through `/bin/sh -c`.
    Local,
}

/// One host to connect to, as the inventory describes it. `None` fields fall back to
/// `~/.ssh/config`, then to OpenSSH's defaults: inventory values win over the ssh config,
/// as in Ansible.
#[derive(Debug, Clone, Default)]
pub struct ConnectTarget {
    /// The inventory host name, used in every message.
    pub name: String,
    pub kind: ConnectionKind,
    /// `ansible_host`: the address to connect to; the name when absent. Also the name the
    /// ssh config is queried with (as `ssh` would be called by Ansible).
    pub address: Option<String>,
    /// `ansible_port`.
    pub port: Option<u16>,
    /// `ansible_user`.
    pub user: Option<String>,
    /// `ansible_ssh_private_key_file`.
    pub identity_file: Option<PathBuf>,
    /// ProxyJump: `[user@]host[:port]`, or a comma-separated list of them (first hop first).
    pub proxy_jump: Option<String>,
    /// Connect timeout (TCP connect and SSH handshake); default 10 s.
    pub connect_timeout: Option<Duration>,
}

impl ConnectTarget {
    pub fn new(name: impl Into<String>) -> Self {
        ConnectTarget {
            name: name.into(),
            ..Default::default()
        }
    }
}

/// Run the command through `sudo -n` (`become: true`), as `user` when given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Become {
    pub user: Option<String>,
}

/// One command to run.
#[derive(Debug, Clone)]
pub struct ExecRequest<'a> {
    /// Shell text, run by the login shell (ssh) or `/bin/sh -c` (local).
    pub command: &'a str,
    /// Past this, the command is terminated and [`TransportError::CommandTimedOut`] returned.
    pub timeout: Option<Duration>,
    pub become_: Option<Become>,
    /// What the command's standard input gets, then EOF; without it stdin is empty (EOF).
    pub stdin: Option<Input<'a>>,
    /// Cancelled: the command is terminated and [`TransportError::Cancelled`] returned.
    pub cancel: Option<CancellationToken>,
}

impl<'a> ExecRequest<'a> {
    pub fn new(command: &'a str) -> Self {
        ExecRequest {
            command,
            timeout: None,
            become_: None,
            stdin: None,
            cancel: None,
        }
    }
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    pub fn become_user(mut self, user: Option<String>) -> Self {
        self.become_ = Some(Become { user });
        self
    }
    pub fn stdin(mut self, stdin: &'a [u8]) -> Self {
        self.stdin = Some(Input::Bytes(stdin));
        self
    }
    pub fn stdin_later(mut self, later: Later) -> Self {
        self.stdin = Some(Input::Later(later));
        self
    }
    pub fn cancel(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }
    /// What to write to the command's stdin before its EOF, once known: nothing without
    /// [`ExecRequest::stdin`].
    pub fn input(&self) -> impl std::future::Future<Output = Vec<u8>> + Send + 'static {
        let input = self.stdin.as_ref().map(Input::bytes);
        async move {
            match input {
                Some(bytes) => bytes.await,
                None => Vec::new(),
            }
        }
    }
}

/// A command's standard input.
#[derive(Debug, Clone)]
pub enum Input<'a> {
    Bytes(&'a [u8]),
    /// Known only once the command has begun answering (the guard's go-ahead).
    Later(Later),
}

impl Input<'_> {
    /// The bytes to write, once they are known: for [`Input::Later`], what its sender sent,
    /// or none when the sender was dropped unsent.
    pub fn bytes(&self) -> impl std::future::Future<Output = Vec<u8>> + Send + 'static {
        let input = match self {
            Input::Bytes(bytes) => Ok(bytes.to_vec()),
            Input::Later(later) => Err(later.0.clone()),
        };
        async move {
            match input {
                Ok(bytes) => bytes,
                Err(mut later) => match later.wait_for(Option::is_some).await {
                    Ok(sent) => sent.clone().unwrap_or_default(),
                    Err(_) => Vec::new(),
                },
            }
        }
    }
}

/// Input written to a running command when the controller is ready to send it.
#[derive(Debug, Clone)]
pub struct Later(tokio::sync::watch::Receiver<Option<Vec<u8>>>);

/// Sends a [`Later`]'s bytes; dropped unsent, the command's stdin just ends.
pub struct LaterSender(tokio::sync::watch::Sender<Option<Vec<u8>>>);

impl Later {
    pub fn channel() -> (LaterSender, Later) {
        let (tx, rx) = tokio::sync::watch::channel(None);
        (LaterSender(tx), Later(rx))
    }
}

impl LaterSender {
    pub fn send(self, bytes: Vec<u8>) {
        // No receiver left: the command has ended, and nothing waits for its input.
        let _ = self.0.send(Some(bytes));
    }
}

/// Which stream a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// Receives output as it arrives, chunk by chunk, in order within each stream.
pub type OutputSink<'s> = dyn FnMut(OutputStream, &[u8]) + Send + 's;

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code (0 is success).
    Code(u32),
    /// It was killed by this signal (name without `SIG`, e.g. `TERM`, `KILL`).
    Signal(String),
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        *self == ExitStatus::Code(0)
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// What an error means for the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The host could not be reached, or was lost: nothing (more) ran on it.
    Unreachable,
    /// The command ran and failed (timed out, was cancelled, sudo refused).
    Failed,
}

fn fmt_duration(d: &Duration) -> String {
    crate::duration::friendly(*d)
}

fn fmt_lines(lines: &[usize]) -> String {
    let v: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    v.join(", ")
}

fn fmt_tried(tried: &[String]) -> String {
    if tried.is_empty() {
        "no key: no identity file, no ssh-agent (SSH_AUTH_SOCK unset) and no default key in ~/.ssh"
            .to_string()
    } else {
        tried.join("; ")
    }
}

/// Everything that can go wrong reaching a host or running a command on it.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(
        "{host}: cannot resolve address {address:?}: {detail}; check ansible_host or the name"
    )]
    Dns {
        host: String,
        address: String,
        detail: String,
    },
    #[error("{host}: connection to {addr} refused: is sshd running and listening on that port (ansible_port)?")]
    Refused { host: String, addr: String },
    #[error("{host}: no SSH answer from {addr} within the connect timeout of {}: host down, firewalled or wrong address", fmt_duration(.timeout))]
    ConnectTimeout {
        host: String,
        addr: String,
        timeout: Duration,
    },
    #[error("{host}: cannot connect to {addr}: {source}")]
    Connect {
        host: String,
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{host}: SSH handshake with {addr} failed: {detail}")]
    Handshake {
        host: String,
        addr: String,
        detail: String,
    },
    #[error("{host}: host key of {key_host} ({fingerprint}) is not in {known_hosts}; refusing to connect (`ssh-keyscan -p {port} {hostname}` fetches it; fleetup prints one command for every unknown host at the end)")]
    HostKeyUnknown {
        host: String,
        /// The name looked up: `host` or `[host]:port`.
        key_host: String,
        hostname: String,
        port: u16,
        known_hosts: PathBuf,
        fingerprint: String,
    },
    #[error("{host}: WARNING: HOST KEY OF {key_host} HAS CHANGED! It does not match the key recorded in {known_hosts} line {line}; it now presents {fingerprint}. Someone may be intercepting the connection (man in the middle), or the host was reinstalled. Refusing to connect. If the change is expected, remove the old key with `ssh-keygen -R '{key_host}' -f {known_hosts}` and add the new one")]
    HostKeyChanged {
        host: String,
        key_host: String,
        known_hosts: PathBuf,
        line: usize,
        fingerprint: String,
    },
    #[error("{host}: WARNING: REVOKED HOST KEY DETECTED! The host key {fingerprint} of {key_host} is marked @revoked in {known_hosts} line {line}: a stolen key may be used to impersonate this host. Refusing to connect")]
    HostKeyRevoked {
        host: String,
        key_host: String,
        known_hosts: PathBuf,
        line: usize,
        fingerprint: String,
    },
    #[error("{host}: {key_host} presents a {fingerprint} host key, but {known_hosts} records only keys of other types for it (line {}); refusing to connect. If the host's keys were replaced, remove the old entries with `ssh-keygen -R '{key_host}' -f {known_hosts}` and add the new key", fmt_lines(.lines))]
    HostKeyOtherType {
        host: String,
        key_host: String,
        known_hosts: PathBuf,
        lines: Vec<usize>,
        fingerprint: String,
    },
    #[error("{host}: the host certificate of {key_host} is signed by a CA that {known_hosts} line {line} trusts, but it is not valid for this host: {reason}. Refusing to connect; have the host certificate re-issued (ssh-keygen -s CA -h -n NAME)")]
    HostCertificateInvalid {
        host: String,
        key_host: String,
        known_hosts: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{host}: {key_host} presents a host certificate signed by CA {ca_fingerprint}, which no @cert-authority line of {known_hosts} trusts for it, and its plain host key is not recorded; refusing to connect. If that CA is yours, add `@cert-authority PATTERN CA-PUBLIC-KEY` to {known_hosts}")]
    HostCertificateUntrusted {
        host: String,
        key_host: String,
        known_hosts: PathBuf,
        ca_fingerprint: String,
    },
    #[error("{host}: cannot use the host key of {key_host}: {detail}")]
    HostKeyCheck {
        host: String,
        key_host: String,
        detail: String,
    },
    #[error("{host}: authentication as {user:?} failed; tried: {}. Check ansible_user and that one of these keys is in the user's authorized_keys", fmt_tried(.tried))]
    AuthFailed {
        host: String,
        user: String,
        tried: Vec<String>,
    },
    #[error("{host}: cannot use private key {path}: {detail}")]
    Key {
        host: String,
        path: PathBuf,
        detail: String,
    },
    #[error("{host}: authentication did not finish within {}", fmt_duration(.timeout))]
    AuthTimeout { host: String, timeout: Duration },
    #[error("{host}: connection lost: {detail}")]
    ConnectionLost {
        host: String,
        detail: String,
        /// The command may have reached the host: false only when its channel never
        /// opened, so that nothing of it can have run.
        sent: bool,
    },
    #[error("{host}: through jump host {jump}: {source}")]
    ProxyJump {
        host: String,
        jump: String,
        #[source]
        source: Box<TransportError>,
    },
    #[error("{host}: ssh config {}, line {line}: {detail}", .file.display())]
    SshConfig {
        host: String,
        file: PathBuf,
        line: usize,
        detail: String,
    },
    #[error("{host}: invalid ProxyJump {spec:?}: {detail}")]
    ProxyJumpSpec {
        host: String,
        spec: String,
        detail: String,
    },
    #[error("{host}: command timed out after {} and was terminated", fmt_duration(.timeout))]
    CommandTimedOut { host: String, timeout: Duration },
    #[error("{host}: command cancelled and terminated")]
    Cancelled { host: String },
    #[error("{host}: sudo asked {login} for a password to run `{command}`: fleetup runs every become command through `sudo -n ... -- /bin/sh -c` and cannot type one. A NOPASSWD rule for the command itself does not cover /bin/sh; allow /bin/sh for {login} with NOPASSWD in sudoers, or log in as a user that needs no become")]
    BecomePasswordRequired {
        host: String,
        login: String,
        /// What sudo was asked to run.
        command: String,
    },
    #[error("{host}: cannot run the command: {detail}")]
    Exec { host: String, detail: String },
}

impl TransportError {
    pub fn class(&self) -> ErrorClass {
        use TransportError::*;
        match self {
            CommandTimedOut { .. }
            | Cancelled { .. }
            | BecomePasswordRequired { .. }
            | Exec { .. } => ErrorClass::Failed,
            _ => ErrorClass::Unreachable,
        }
    }

    pub fn is_unreachable(&self) -> bool {
        self.class() == ErrorClass::Unreachable
    }

    /// The connection was found lost before the command could reach the host: sending
    /// it again elsewhere cannot run it twice.
    pub fn never_sent(&self) -> bool {
        matches!(self, TransportError::ConnectionLost { sent: false, .. })
    }

    /// The inventory host the error is about.
    pub fn host(&self) -> &str {
        use TransportError::*;
        match self {
            Dns { host, .. }
            | Refused { host, .. }
            | ConnectTimeout { host, .. }
            | Connect { host, .. }
            | Handshake { host, .. }
            | HostKeyUnknown { host, .. }
            | HostKeyChanged { host, .. }
            | HostKeyRevoked { host, .. }
            | HostCertificateInvalid { host, .. }
            | HostCertificateUntrusted { host, .. }
            | HostKeyOtherType { host, .. }
            | HostKeyCheck { host, .. }
            | AuthFailed { host, .. }
            | Key { host, .. }
            | AuthTimeout { host, .. }
            | ConnectionLost { host, .. }
            | ProxyJump { host, .. }
            | ProxyJumpSpec { host, .. }
            | SshConfig { host, .. }
            | CommandTimedOut { host, .. }
            | Cancelled { host }
            | BecomePasswordRequired { host, .. }
            | Exec { host, .. } => host,
        }
    }
}

/// Opens connections to hosts. The engine is written against this trait, so its decisions
/// are tested against a scripted host; the real one is [`crate::connect::Transport`].
pub trait Connector: Sync {
    type Connection: Connection;

    /// Opens the one connection to `target` that its commands will share.
    fn connect(
        &self,
        target: &ConnectTarget,
    ) -> impl std::future::Future<Output = Result<Self::Connection, TransportError>> + Send;

    /// The hosts waiting between their pre-flight and their turn, with their connections.
    fn kept(&self) -> &kept::Kept<Self::Connection>;
}

/// An open connection to one host. `exec` takes `&self`: commands run concurrently on one
/// connection each get their own channel.
pub trait Connection: Send + Sync {
    /// The inventory name of the host.
    fn host(&self) -> &str;

    /// Runs one command; see [`ExecRequest`]. A non-zero exit is not an error: it is
    /// returned as [`ExitStatus`].
    fn exec(
        &self,
        request: &ExecRequest<'_>,
        sink: &mut OutputSink<'_>,
    ) -> impl std::future::Future<Output = Result<ExitStatus, TransportError>> + Send;

    /// Whether the connection may still be used: false once it is known lost (the host
    /// closed it, or its keepalives went unanswered). True proves nothing: a connection
    /// that died silently is found out by its next command.
    fn is_alive(&self) -> bool {
        true
    }

    /// Closes the connection, waiting briefly for the host to see the disconnect.
    fn close(&self) -> impl std::future::Future<Output = ()> + Send;
}

/// A connection kept for later, while it is still alive; one that died while it was kept
/// is closed, and `true` says so.
pub async fn still_alive<C: Connection>(kept: Option<C>) -> (Option<C>, bool) {
    match kept {
        Some(conn) if conn.is_alive() => (Some(conn), false),
        Some(dead) => {
            dead.close().await;
            (None, true)
        }
        None => (None, false),
    }
}

/// Closes every one of `conns` at once.
pub async fn close_all<C: Connection>(conns: impl IntoIterator<Item = C>) {
    let conns: Vec<C> = conns.into_iter().collect();
    futures::future::join_all(conns.iter().map(|c| c.close())).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let e = TransportError::Refused {
            host: "h".into(),
            addr: "127.0.0.1:1".into(),
        };
        assert!(e.is_unreachable());
        assert_eq!(e.host(), "h");
        let e = TransportError::CommandTimedOut {
            host: "h".into(),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(e.class(), ErrorClass::Failed);
    }
}
