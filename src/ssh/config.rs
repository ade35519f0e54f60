//! `~/.ssh/config` and how a host's connection settings are resolved from the inventory,
//! the ssh config, and defaults (in that order: inventory values win, as in Ansible).

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ssh2_config::{ParseRule, SshConfig};

use crate::transport::{ConnectTarget, TransportError};

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The ssh config file could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum SshSetupError {
    #[error("cannot read ssh config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse ssh config {path}: {detail}")]
    Parse { path: PathBuf, detail: String },
}

/// The parsed ssh config; empty when the file does not exist.
pub(crate) struct SshConfigFile {
    config: Option<SshConfig>,
}

impl SshConfigFile {
    pub(crate) fn load(path: &Path) -> Result<Self, SshSetupError> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(SshConfigFile { config: None })
            }
            Err(source) => {
                return Err(SshSetupError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let config = SshConfig::default()
            .parse(
                &mut BufReader::new(file),
                ParseRule::ALLOW_UNKNOWN_FIELDS | ParseRule::ALLOW_UNSUPPORTED_FIELDS,
            )
            .map_err(|e| SshSetupError::Parse {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })?;
        Ok(SshConfigFile {
            config: Some(config),
        })
    }

    pub(crate) fn empty() -> Self {
        SshConfigFile { config: None }
    }

    fn query(&self, host: &str) -> Option<ssh2_config::HostParams> {
        self.config.as_ref().map(|c| c.query(host))
    }
}

/// One hop of a ProxyJump: `[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JumpSpec {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl std::fmt::Display for JumpSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            write!(f, "{}", self.host)?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// Parses a ProxyJump value: a comma-separated list of `[user@]host[:port]` (or
/// `ssh://[user@]host[:port]`, or `[v6addr]:port`), first hop first. `none` means no jump.
pub(crate) fn parse_proxy_jump(spec: &str) -> Result<Vec<JumpSpec>, String> {
    let spec = spec.trim();
    if spec.is_empty() || spec.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    spec.split(',').map(|s| parse_jump(s.trim())).collect()
}

fn parse_jump(s: &str) -> Result<JumpSpec, String> {
    let s = s.strip_prefix("ssh://").unwrap_or(s);
    let (user, rest) = match s.rsplit_once('@') {
        Some((u, r)) if !u.is_empty() => (Some(u.to_string()), r),
        Some(_) => return Err(format!("empty user in {s:?}")),
        None => (None, s),
    };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("unclosed '[' in {s:?}"))?;
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return Err(format!("unexpected {after:?} after ']' in {s:?}")),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(format!("no host in {s:?}"));
    }
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("bad port {p:?} in {s:?}"))
        })
        .transpose()?;
    Ok(JumpSpec {
        user,
        host: host.to_string(),
        port,
    })
}

/// Everything needed to open one SSH session (one hop).
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// Inventory name, for messages.
    pub name: String,
    /// What is connected to and looked up in known_hosts (HostName after the ssh config).
    pub hostname: String,
    pub port: u16,
    pub user: String,
    /// Identity files named by the inventory or the ssh config, in order.
    pub identity_files: Vec<PathBuf>,
    /// `CertificateFile`s of the ssh config.
    pub certificate_files: Vec<PathBuf>,
    pub jumps: Vec<JumpSpec>,
    pub connect_timeout: Duration,
    pub keepalive_interval: Option<Duration>,
}

/// Resolves a target: inventory value, else ssh config (queried with the address, else the
/// name), else the default.
pub(crate) fn resolve(
    config: &SshConfigFile,
    target: &ConnectTarget,
    default_user: &str,
    default_keepalive: Option<Duration>,
) -> Result<Resolved, TransportError> {
    let query = target.address.as_deref().unwrap_or(&target.name);
    let params = config.query(query);
    let p = params.as_ref();
    let hostname = match &target.address {
        Some(a) => a.clone(),
        None => p
            .and_then(|p| p.host_name.clone())
            .unwrap_or_else(|| target.name.clone()),
    };
    let jumps = match &target.proxy_jump {
        Some(spec) => parse_proxy_jump(spec),
        None => match p.and_then(|p| p.proxy_jump.clone()) {
            Some(list) => parse_proxy_jump(&list.join(",")),
            None => Ok(Vec::new()),
        },
    }
    .map_err(|detail| TransportError::ProxyJumpSpec {
        host: target.name.clone(),
        spec: target.proxy_jump.clone().unwrap_or_default(),
        detail,
    })?;
    let identity_files = match &target.identity_file {
        Some(f) => vec![expand_tilde(f)],
        None => p
            .and_then(|p| p.identity_file.clone())
            .unwrap_or_default()
            .iter()
            .map(|f| expand_tilde(f))
            .collect(),
    };
    Ok(Resolved {
        name: target.name.clone(),
        hostname,
        port: target.port.or_else(|| p.and_then(|p| p.port)).unwrap_or(22),
        user: target
            .user
            .clone()
            .or_else(|| p.and_then(|p| p.user.clone()))
            .unwrap_or_else(|| default_user.to_string()),
        identity_files,
        certificate_files: p
            .and_then(|p| p.certificate_file.as_deref())
            .map(|f| vec![expand_tilde(f)])
            .unwrap_or_default(),
        jumps,
        connect_timeout: target
            .connect_timeout
            .or_else(|| p.and_then(|p| p.connect_timeout))
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        keepalive_interval: p
            .and_then(|p| p.server_alive_interval)
            .filter(|d| !d.is_zero())
            .or(default_keepalive),
    })
}

/// Resolves one jump host: its own ssh config entry applies; the user defaults to the
/// target's login user, the connect timeout and keepalive to the target's.
pub(crate) fn resolve_jump(config: &SshConfigFile, target: &Resolved, jump: &JumpSpec) -> Resolved {
    let params = config.query(&jump.host);
    let p = params.as_ref();
    Resolved {
        name: target.name.clone(),
        hostname: p
            .and_then(|p| p.host_name.clone())
            .unwrap_or_else(|| jump.host.clone()),
        port: jump.port.or_else(|| p.and_then(|p| p.port)).unwrap_or(22),
        user: jump
            .user
            .clone()
            .or_else(|| p.and_then(|p| p.user.clone()))
            .unwrap_or_else(|| target.user.clone()),
        identity_files: p
            .and_then(|p| p.identity_file.clone())
            .map(|v| v.iter().map(|f| expand_tilde(f)).collect())
            .unwrap_or_else(|| target.identity_files.clone()),
        certificate_files: p
            .and_then(|p| p.certificate_file.as_deref())
            .map(|f| vec![expand_tilde(f)])
            .unwrap_or_else(|| target.certificate_files.clone()),
        jumps: Vec::new(),
        connect_timeout: p
            .and_then(|p| p.connect_timeout)
            .unwrap_or(target.connect_timeout),
        keepalive_interval: target.keepalive_interval,
    }
}

fn expand_tilde(p: &Path) -> PathBuf {
    match p.strip_prefix("~") {
        Ok(rest) => super::home_dir().join(rest),
        Err(_) => p.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jump(user: Option<&str>, host: &str, port: Option<u16>) -> JumpSpec {
        JumpSpec {
            user: user.map(String::from),
            host: host.into(),
            port,
        }
    }

    #[test]
    fn proxy_jump_forms() {
        assert_eq!(
            parse_proxy_jump("admin@bastion:2222, ssh://b2,[::1]:22,u@[fe80::1]").unwrap(),
            vec![
                jump(Some("admin"), "bastion", Some(2222)),
                jump(None, "b2", None),
                jump(None, "::1", Some(22)),
                jump(Some("u"), "fe80::1", None),
            ]
        );
        assert!(parse_proxy_jump("none").unwrap().is_empty());
        assert!(parse_proxy_jump("h:0").is_err());
        assert!(parse_proxy_jump("h:x").is_err());
        assert!(parse_proxy_jump("@h").is_err());
        assert!(parse_proxy_jump("u@:22").is_err());
        assert_eq!(jump(Some("u"), "::1", Some(2)).to_string(), "u@[::1]:2");
    }

    fn config(text: &str) -> SshConfigFile {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config");
        std::fs::write(&path, text).expect("write");
        SshConfigFile::load(&path).expect("parse")
    }

    #[test]
    fn inventory_wins_over_ssh_config() {
        let cfg = config(
            "Host web*\n  HostName 10.0.0.5\n  Port 2200\n  User deploy\n  IdentityFile /k/web\n  ProxyJump jump@bastion:2022\n  ConnectTimeout 3\n  ServerAliveInterval 7\n  ForwardX11 no\n  SomethingUnknown yes\n",
        );
        let t = ConnectTarget::new("web1");
        let r = resolve(&cfg, &t, "me", None).expect("resolve");
        assert_eq!(r.hostname, "10.0.0.5");
        assert_eq!(r.port, 2200);
        assert_eq!(r.user, "deploy");
        assert_eq!(r.identity_files, vec![PathBuf::from("/k/web")]);
        assert_eq!(r.jumps, vec![jump(Some("jump"), "bastion", Some(2022))]);
        assert_eq!(r.connect_timeout, Duration::from_secs(3));
        assert_eq!(r.keepalive_interval, Some(Duration::from_secs(7)));

        let t = ConnectTarget {
            port: Some(22),
            user: Some("root".into()),
            identity_file: Some("/k/inv".into()),
            proxy_jump: Some("none".into()),
            connect_timeout: Some(Duration::from_secs(1)),
            ..ConnectTarget::new("web1")
        };
        let r = resolve(&cfg, &t, "me", None).expect("resolve");
        assert_eq!((r.port, r.user.as_str()), (22, "root"));
        assert_eq!(r.identity_files, vec![PathBuf::from("/k/inv")]);
        assert!(r.jumps.is_empty());
        assert_eq!(r.connect_timeout, Duration::from_secs(1));

        // An ansible_host is what the config is queried with, and is connected to as is.
        let t = ConnectTarget {
            address: Some("192.0.2.1".into()),
            ..ConnectTarget::new("web1")
        };
        let r = resolve(&cfg, &t, "me", Some(Duration::from_secs(10))).expect("resolve");
        assert_eq!(
            (r.hostname.as_str(), r.port, r.user.as_str()),
            ("192.0.2.1", 22, "me")
        );
        assert_eq!(r.keepalive_interval, Some(Duration::from_secs(10)));
    }

    #[test]
    fn missing_config_is_fine() {
        let cfg = SshConfigFile::load(Path::new("/nonexistent/ssh/config")).expect("missing ok");
        let r = resolve(&cfg, &ConnectTarget::new("h"), "me", None).expect("resolve");
        assert_eq!((r.hostname.as_str(), r.port), ("h", 22));
        assert_eq!(r.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
    }
}
