//! The connections of a run: each host is reached over SSH or, for
//! `ansible_connection=local`, on the controller itself. The engine sees only the
//! [`Connector`] and [`Connection`] traits; this is where a host's kind picks one.

use std::sync::Arc;

use crate::ssh::{SshConnection, SshOptions, SshSetupError, SshTransport};
use crate::transport::kept::Kept;
use crate::transport::local::LocalConnection;
use crate::transport::{
    ConnectTarget, Connection, ConnectionKind, Connector, ExecRequest, ExitStatus, OutputSink,
    TransportError,
};

/// The transport of a run: opens connections of either kind.
#[derive(Debug)]
pub struct Transport {
    ssh: Arc<SshTransport>,
    kept: Kept<HostConnection>,
}

impl Transport {
    /// Reads the ssh config once; the options apply to every SSH host.
    pub fn new(options: SshOptions) -> Result<Self, SshSetupError> {
        Ok(Transport {
            ssh: Arc::new(SshTransport::new(options)?),
            kept: Kept::default(),
        })
    }

    pub fn ssh(&self) -> &SshTransport {
        &self.ssh
    }
}

impl Connector for Transport {
    type Connection = HostConnection;

    async fn connect(&self, target: &ConnectTarget) -> Result<HostConnection, TransportError> {
        match target.kind {
            ConnectionKind::Ssh => Ok(HostConnection::Ssh(self.ssh.connect(target).await?)),
            ConnectionKind::Local => Ok(HostConnection::Local(LocalConnection::new(&target.name))),
        }
    }

    fn kept(&self) -> &Kept<HostConnection> {
        &self.kept
    }
}

/// An open connection to one host. Share it with `Arc`: `exec` takes `&self`, and commands
/// run concurrently on one connection each get their own channel.
#[derive(Debug)]
pub enum HostConnection {
    Ssh(SshConnection),
    Local(LocalConnection),
}

impl Connection for HostConnection {
    fn host(&self) -> &str {
        match self {
            HostConnection::Ssh(c) => c.host(),
            HostConnection::Local(c) => c.host(),
        }
    }

    async fn exec(
        &self,
        request: &ExecRequest<'_>,
        sink: &mut OutputSink<'_>,
    ) -> Result<ExitStatus, TransportError> {
        match self {
            HostConnection::Ssh(c) => c.exec(request, sink).await,
            HostConnection::Local(c) => c.exec(request, sink).await,
        }
    }

    fn is_alive(&self) -> bool {
        match self {
            HostConnection::Ssh(c) => c.is_alive(),
            HostConnection::Local(_) => true,
        }
    }

    async fn close(&self) {
        match self {
            HostConnection::Ssh(c) => c.close().await,
            HostConnection::Local(_) => {}
        }
    }
}
