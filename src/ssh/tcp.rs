//! The TCP connection under an SSH session: the host's name resolved and each of its
//! addresses tried in turn, all within the connection's deadline.

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::config::Resolved;
use crate::transport::TransportError;

/// Resolves and connects within the deadline, trying each address in turn.
pub(super) async fn tcp_connect(
    r: &Resolved,
    addr: &str,
    deadline: Instant,
) -> Result<TcpStream, TransportError> {
    let timeout = || TransportError::ConnectTimeout {
        host: r.name.clone(),
        addr: addr.to_string(),
        timeout: r.connect_timeout,
    };
    let addrs: Vec<_> = match tokio::time::timeout_at(
        deadline,
        tokio::net::lookup_host((r.hostname.as_str(), r.port)),
    )
    .await
    {
        Err(_) => return Err(timeout()),
        Ok(Err(e)) => {
            return Err(TransportError::Dns {
                host: r.name.clone(),
                address: r.hostname.clone(),
                detail: e.to_string(),
            })
        }
        Ok(Ok(a)) => a.collect(),
    };
    let mut last = None;
    for sock in &addrs {
        match tokio::time::timeout_at(deadline, TcpStream::connect(sock)).await {
            Err(_) => return Err(timeout()),
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => last = Some(e),
        }
    }
    Err(match last {
        None => TransportError::Dns {
            host: r.name.clone(),
            address: r.hostname.clone(),
            detail: "no address found".into(),
        },
        Some(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => TransportError::Refused {
            host: r.name.clone(),
            addr: addr.to_string(),
        },
        Some(source) => TransportError::Connect {
            host: r.name.clone(),
            addr: addr.to_string(),
            source,
        },
    })
}
