//! The SSH transport, on russh: one authenticated connection per host, opened once, with
//! each command in its own exec channel.
//!
//! Trust is decided as the OpenSSH client decides it (issue 21):
//! - [`known_hosts`]: host key verification under the policy (strict by default), over
//!   `known_hosts_file` (the file format, markers, patterns, hashed names),
//!   `known_hosts_read` (the files, read once while unchanged), `certificate`
//!   (host and user certificates checked as OpenSSH checks them) and `refusal` (the error);
//! - [`auth`]: identity file, then ssh-agent, then `~/.ssh` default keys, each key's
//!   certificates first (`user_cert`); passphrases;
//! - [`config`]: inventory-over-config resolution and ProxyJump hops, over `ssh_config`
//!   (reading the files) and `ssh_config_eval` (`Host`/`Match`, first value wins);
//! - `ledger`: unknown and learned host keys, told once for the fleet;
//! - [`handler`]: the russh handler and the state it shares with the connection;
//! - [`exec`]: running a command, and terminating it on the host (root included);
//! - `tcp`: the TCP connection under a session.

mod auth;
mod certificate;
pub mod config;
mod exec;
mod handler;
mod host_pattern;
pub mod known_hosts;
mod known_hosts_file;
mod known_hosts_read;
mod ledger;
mod refusal;
mod ssh_config;
mod ssh_config_eval;
mod tcp;
mod user_cert;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use russh::client::{self, Handle};
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::time::Instant;

use crate::transport::{ConnectTarget, TransportError};
use auth::{AuthOutcome, AuthSources, KeyStore};
pub use config::SshSetupError;
use config::{AgentChoice, JumpSpec, Resolved, SshConfigFile};

/// The jump hosts on the way to a host, each as written and resolved.
type Hops = Vec<(JumpSpec, Resolved)>;
use handler::{ClientHandler, SessionState};
pub use known_hosts::HostKeyChecking;
use known_hosts::Verdict;
use ledger::Ledger;
pub use ledger::{HostKeyReport, LearnedHostKey, UnknownHostKey};
use tcp::tcp_connect;

/// Options of the SSH transport, for every host of a run.
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// Default `~/.ssh/known_hosts`; accept-new records keys there.
    pub known_hosts: PathBuf,
    /// Read after `known_hosts`, as OpenSSH's GlobalKnownHostsFile (default
    /// `/etc/ssh/ssh_known_hosts` and `ssh_known_hosts2`): where companies put their
    /// `@cert-authority` and `@revoked` lines.
    pub global_known_hosts: Vec<PathBuf>,
    /// Default strict. `Off` must be warned about by the caller, every run.
    pub host_key_checking: HostKeyChecking,
    /// The NAME of the environment variable holding the passphrase of encrypted keys.
    pub passphrase_env: Option<String>,
    /// Ask for a passphrase on the terminal when the variable is not set and stdin is a
    /// terminal (default true).
    pub prompt_passphrase: bool,
    /// Default `~/.ssh/config` (a missing file is fine); `None` reads no ssh config.
    pub ssh_config: Option<PathBuf>,
    /// Keepalive when the ssh config sets no ServerAliveInterval (default 10 s).
    pub keepalive_interval: Option<Duration>,
    /// Unanswered keepalives before the host is declared lost (default 2: with 10 s, a dead
    /// host is detected within 30 s).
    pub keepalive_max: usize,
    /// Limit for the authentication exchange (default 30 s).
    pub auth_timeout: Duration,
    /// ssh-agent socket; default `$SSH_AUTH_SOCK`.
    pub agent_socket: Option<PathBuf>,
    /// Keys tried last; default `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`.
    pub default_identity_files: Vec<PathBuf>,
    /// Login user when neither the inventory nor the ssh config names one; default `$USER`.
    pub default_user: String,
}

impl Default for SshOptions {
    fn default() -> Self {
        let ssh_dir = home_dir().join(".ssh");
        SshOptions {
            known_hosts: ssh_dir.join("known_hosts"),
            global_known_hosts: vec![
                PathBuf::from("/etc/ssh/ssh_known_hosts"),
                PathBuf::from("/etc/ssh/ssh_known_hosts2"),
            ],
            host_key_checking: HostKeyChecking::Strict,
            passphrase_env: None,
            prompt_passphrase: true,
            ssh_config: Some(ssh_dir.join("config")),
            keepalive_interval: Some(Duration::from_secs(10)),
            keepalive_max: 2,
            auth_timeout: Duration::from_secs(30),
            agent_socket: std::env::var_os("SSH_AUTH_SOCK")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            default_identity_files: ["id_ed25519", "id_ecdsa", "id_rsa"]
                .iter()
                .map(|n| ssh_dir.join(n))
                .collect(),
            default_user: std::env::var("USER")
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| "root".to_string()),
        }
    }
}

pub(crate) fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Opens SSH connections; one per run, shared by every host.
pub struct SshTransport {
    options: SshOptions,
    config: Arc<SshConfigFile>,
    keys: KeyStore,
    /// Unknown and learned host keys, told once for the fleet.
    ledger: Ledger,
    /// `known_hosts`, then `global_known_hosts`.
    known_hosts_files: Arc<[PathBuf]>,
    /// The russh config for the default keepalive, shared by every connection.
    russh_config: Arc<client::Config>,
}

/// One SSH session (a hop or the host itself).
struct Session {
    handle: Handle<ClientHandler>,
    state: Arc<SessionState>,
}

/// An authenticated connection to one host (through its jump hosts, kept open beside it).
pub struct SshConnection {
    name: String,
    user: String,
    handle: Handle<ClientHandler>,
    state: Arc<SessionState>,
    /// Jump host sessions, first hop first; closed after the host's.
    jumps: Vec<Session>,
}

impl SshTransport {
    pub fn new(options: SshOptions) -> Result<Self, SshSetupError> {
        let config = match &options.ssh_config {
            Some(path) => SshConfigFile::load(path, &options.default_user)?,
            None => SshConfigFile::empty(&options.default_user),
        };
        let keys = KeyStore::new(options.passphrase_env.clone(), options.prompt_passphrase);
        let russh_config = Arc::new(russh_config(&options, options.keepalive_interval));
        Ok(SshTransport {
            ledger: Ledger::new(options.known_hosts.clone()),
            known_hosts_files: std::iter::once(options.known_hosts.clone())
                .chain(options.global_known_hosts.iter().cloned())
                .collect(),
            options,
            config: Arc::new(config),
            keys,
            russh_config,
        })
    }

    pub fn options(&self) -> &SshOptions {
        &self.options
    }

    /// The host keys this transport's connections found unknown, or recorded, since the
    /// last call (each is reported once).
    pub fn take_host_keys(&self) -> HostKeyReport {
        self.ledger.take()
    }

    /// Connects and authenticates to `target`, through its ProxyJump hosts if any. Each
    /// host key on the way is verified; nothing runs on a host whose key is refused.
    pub async fn connect(&self, target: &ConnectTarget) -> Result<SshConnection, TransportError> {
        let (resolved, hops) = self.resolve(target).await?;
        let mut jumps: Vec<Session> = Vec::with_capacity(hops.len());
        for (spec, hop) in &hops {
            let session = match jumps.last() {
                None => self.connect_direct(hop).await,
                Some(prev) => self.connect_through(&prev.handle, hop).await,
            };
            match session {
                Ok(s) => jumps.push(s),
                Err(e) => {
                    close_sessions(&mut jumps).await;
                    return Err(TransportError::ProxyJump {
                        host: resolved.name.clone(),
                        jump: spec.to_string(),
                        source: Box::new(e),
                    });
                }
            }
        }
        let session = match jumps.last() {
            None => self.connect_direct(&resolved).await,
            Some(prev) => self.connect_through(&prev.handle, &resolved).await,
        };
        match session {
            Ok(s) => Ok(SshConnection {
                name: resolved.name,
                user: resolved.user,
                handle: s.handle,
                state: s.state,
                jumps,
            }),
            Err(e) => {
                close_sessions(&mut jumps).await;
                Err(e)
            }
        }
    }

    /// `target` as the ssh config resolves it, and its jump hosts. On a thread of their
    /// own: a `Match exec` runs a command, and one thread serves every connection.
    async fn resolve(&self, target: &ConnectTarget) -> Result<(Resolved, Hops), TransportError> {
        let config = self.config.clone();
        let target = target.clone();
        let user = self.options.default_user.clone();
        let keepalive = self.options.keepalive_interval;
        let resolving = tokio::task::spawn_blocking(move || {
            let resolved = config::resolve(&config, &target, &user, keepalive)?;
            let hops = config::hops(&config, &resolved)?;
            Ok((resolved, hops))
        });
        match resolving.await {
            Ok(resolved) => resolved,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    async fn connect_direct(&self, r: &Resolved) -> Result<Session, TransportError> {
        self.preload_keys(r).await?;
        let deadline = Instant::now() + r.connect_timeout;
        let addr = format!("{}:{}", r.hostname, r.port);
        let stream = tcp_connect(r, &addr, deadline).await?;
        self.open_session(r, stream, &addr, deadline).await
    }

    async fn connect_through(
        &self,
        jump: &Handle<ClientHandler>,
        r: &Resolved,
    ) -> Result<Session, TransportError> {
        self.preload_keys(r).await?;
        let deadline = Instant::now() + r.connect_timeout;
        let addr = format!("{}:{}", r.hostname, r.port);
        let channel = match tokio::time::timeout_at(
            deadline,
            jump.channel_open_direct_tcpip(r.hostname.clone(), u32::from(r.port), "127.0.0.1", 0),
        )
        .await
        {
            Err(_) => {
                return Err(TransportError::ConnectTimeout {
                    host: r.name.clone(),
                    addr,
                    timeout: r.connect_timeout,
                })
            }
            Ok(Err(e)) => {
                return Err(TransportError::Connect {
                    host: r.name.clone(),
                    addr,
                    source: std::io::Error::other(format!(
                        "the jump host could not open a connection to it ({e})"
                    )),
                })
            }
            Ok(Ok(c)) => c,
        };
        self.open_session(r, channel.into_stream(), &addr, deadline)
            .await
    }

    /// Identity files named for the host are loaded (and their passphrase asked) before
    /// connecting, so that no prompt runs inside a network timeout.
    async fn preload_keys(&self, r: &Resolved) -> Result<(), TransportError> {
        for path in &r.identity_files {
            if let Err(e) = self.keys.load(path, true).await {
                return Err(TransportError::Key {
                    host: r.name.clone(),
                    path: path.clone(),
                    detail: e.detail().to_string(),
                });
            }
        }
        Ok(())
    }

    /// SSH handshake (host key verification included) and authentication on a stream.
    async fn open_session<S>(
        &self,
        r: &Resolved,
        stream: S,
        addr: &str,
        deadline: Instant,
    ) -> Result<Session, TransportError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let state = Arc::new(SessionState::default());
        let handler = ClientHandler {
            state: state.clone(),
            policy: self.options.host_key_checking,
            known_hosts: self.known_hosts_files.clone(),
            key_host: r.hostname.clone(),
            port: r.port,
        };
        // russh reads each packet's length, then its rest, straight from the stream: a
        // step's handful of small packets cost two reads each and a last one that finds
        // nothing. Through a small buffer, one read takes what has arrived; larger reads
        // (a command's output) bypass it.
        let stream = BufReader::with_capacity(READ_BUFFER, stream);
        let mut handle = match tokio::time::timeout_at(
            deadline,
            client::connect_stream(self.session_config(r), stream, handler),
        )
        .await
        {
            Err(_) => {
                return Err(TransportError::ConnectTimeout {
                    host: r.name.clone(),
                    addr: addr.to_string(),
                    timeout: r.connect_timeout,
                })
            }
            Ok(Err(e)) => return Err(self.handshake_error(r, &state, addr, e)),
            Ok(Ok(h)) => h,
        };
        if let Some(Verdict::Learned { fingerprint }) = state.verdict() {
            self.ledger.learned(LearnedHostKey {
                host: r.name.clone(),
                key_host: known_hosts::key_host(&r.hostname, r.port),
                fingerprint,
            });
        }
        let outcome = tokio::time::timeout(
            self.options.auth_timeout,
            auth::authenticate(&mut handle, &r.user, &self.keys, &self.auth_sources(r)),
        )
        .await;
        let failure = match outcome {
            Ok(Ok(AuthOutcome::Success)) => return Ok(Session { handle, state }),
            Ok(Ok(AuthOutcome::Failed { tried })) => TransportError::AuthFailed {
                host: r.name.clone(),
                user: r.user.clone(),
                tried,
            },
            Ok(Ok(AuthOutcome::KeyUnusable { path, detail })) => TransportError::Key {
                host: r.name.clone(),
                path,
                detail,
            },
            Ok(Err(e)) => TransportError::ConnectionLost {
                host: r.name.clone(),
                detail: state
                    .end_reason()
                    .unwrap_or_else(|| format!("during authentication: {e}")),
                sent: false,
            },
            Err(_) => TransportError::AuthTimeout {
                host: r.name.clone(),
                timeout: self.options.auth_timeout,
            },
        };
        close_session(&handle, &state).await;
        Err(failure)
    }

    /// Where `r`'s keys may come from: its files, the agent it names (else the default
    /// one), and the default key files.
    fn auth_sources<'a>(&'a self, r: &'a Resolved) -> AuthSources<'a> {
        AuthSources {
            identity_files: &r.identity_files,
            certificate_files: &r.certificate_files,
            agent_socket: match &r.agent {
                AgentChoice::Default => self.options.agent_socket.as_deref(),
                AgentChoice::Disabled => None,
                AgentChoice::Socket(path) => Some(path.as_path()),
            },
            default_keys: &self.options.default_identity_files,
        }
    }

    /// The russh config for `r`: the host key algorithms known_hosts records for it come
    /// first (so a recorded key is checked, not another type), and its keepalive.
    fn session_config(&self, r: &Resolved) -> Arc<client::Config> {
        let kh = &self.known_hosts_files;
        let (preferred_keys, certificates) = match self.options.host_key_checking {
            HostKeyChecking::Off => (None, false),
            _ => {
                let n = known_hosts::negotiation(kh, &r.hostname, r.port);
                (n.preferred, n.certificates)
            }
        };
        if preferred_keys.is_none() && !certificates {
            return if r.keepalive_interval == self.options.keepalive_interval {
                self.russh_config.clone()
            } else {
                Arc::new(russh_config(&self.options, r.keepalive_interval))
            };
        }
        let key = preferred_keys.map_or(russh::Preferred::DEFAULT.key, Into::into);
        Arc::new(client::Config {
            preferred: russh::Preferred {
                // A CA vouches for the host: its certificate is asked for first.
                host_key_certificates: if certificates {
                    key.clone()
                } else {
                    Default::default()
                },
                key,
                ..Default::default()
            },
            ..russh_config(&self.options, r.keepalive_interval)
        })
    }

    fn handshake_error(
        &self,
        r: &Resolved,
        state: &SessionState,
        addr: &str,
        e: russh::Error,
    ) -> TransportError {
        if let Some(refused) = state.verdict().and_then(|v| {
            refusal::host_key_error(v, &r.name, &r.hostname, r.port, &self.options.known_hosts)
        }) {
            if let TransportError::HostKeyUnknown {
                key_host,
                fingerprint,
                ..
            } = &refused
            {
                self.ledger.unknown(UnknownHostKey {
                    host: r.name.clone(),
                    hostname: r.hostname.clone(),
                    port: r.port,
                    key_host: key_host.clone(),
                    fingerprint: fingerprint.clone(),
                });
            }
            return refused;
        }
        TransportError::Handshake {
            host: r.name.clone(),
            addr: addr.to_string(),
            detail: match e {
                russh::Error::Disconnect | russh::Error::HUP => {
                    "the server closed the connection (overloaded: MaxStartups, or not an SSH server?)".into()
                }
                other => other.to_string(),
            },
        }
    }
}

/// The largest packet a server may send on a channel. Each session's read buffer grows
/// to its largest packet and stays there while the host waits for its turn: at russh's
/// 32 kB that was ~29 kB per held connection (memory.sh).
const MAX_PACKET: u32 = 8 << 10;

/// What one read from a connection takes at most into its buffer: the small packets a
/// step's answer comes in (channel confirmations, exit status, end of file, close) fit
/// many times over. Kept small: every held connection has one.
const READ_BUFFER: usize = 2 << 10;

fn russh_config(options: &SshOptions, keepalive: Option<Duration>) -> client::Config {
    client::Config {
        keepalive_interval: keepalive,
        keepalive_max: options.keepalive_max,
        nodelay: true,
        maximum_packet_size: MAX_PACKET,
        ..Default::default()
    }
}

/// How long `close` waits for the host to take the disconnect.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// `disconnect` only queues the message: wait (briefly) for the session to end.
async fn close_session(handle: &Handle<ClientHandler>, state: &SessionState) {
    let _ = handle
        .disconnect(russh::Disconnect::ByApplication, "fleetup done", "en")
        .await;
    let _ = tokio::time::timeout(CLOSE_WAIT, state.ended.cancelled()).await;
}

async fn close_sessions(sessions: &mut Vec<Session>) {
    while let Some(s) = sessions.pop() {
        close_session(&s.handle, &s.state).await;
    }
}

impl std::fmt::Debug for SshConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshConnection")
            .field("host", &self.name)
            .field("user", &self.user)
            .field("jumps", &self.jumps.len())
            .field("alive", &self.is_alive())
            .finish()
    }
}

impl std::fmt::Debug for SshTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshTransport")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl SshConnection {
    pub fn host(&self) -> &str {
        &self.name
    }

    /// The login user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Whether the connection is still up (false once lost or closed).
    pub fn is_alive(&self) -> bool {
        !self.state.ended.is_cancelled() && !self.handle.is_closed()
    }

    /// Disconnects from the host, then from its jump hosts (last hop first).
    pub async fn close(&self) {
        close_session(&self.handle, &self.state).await;
        for s in self.jumps.iter().rev() {
            close_session(&s.handle, &s.state).await;
        }
    }
}
