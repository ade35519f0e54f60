//! `~/.ssh/config` and how a host's connection settings are resolved from the inventory,
//! the ssh config, and defaults (in that order: inventory values win, as in Ansible).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ssh_config::{self, Item};
use super::ssh_config_eval::{self, HostConfig, Query};
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

/// The parsed ssh config (empty when the file does not exist), and what `Match` needs to
/// know about the controller.
pub(crate) struct SshConfigFile {
    items: Vec<Item>,
    local: LocalFacts,
}

/// The controller's side of `Match localuser` and `exec`'s %-tokens.
struct LocalFacts {
    user: String,
    hostname: String,
    home: String,
    uid: u32,
}

impl LocalFacts {
    fn read(default_user: &str) -> LocalFacts {
        LocalFacts {
            user: default_user.to_string(),
            hostname: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            home: super::home_dir().to_string_lossy().into_owned(),
            uid: nix::unistd::getuid().as_raw(),
        }
    }
}

impl SshConfigFile {
    pub(crate) fn load(path: &Path, local_user: &str) -> Result<Self, SshSetupError> {
        Ok(SshConfigFile {
            items: ssh_config::load(path, &super::home_dir())?,
            local: LocalFacts::read(local_user),
        })
    }

    pub(crate) fn empty(local_user: &str) -> Self {
        SshConfigFile {
            items: Vec::new(),
            local: LocalFacts::read(local_user),
        }
    }

    /// The options for `host` (the name as given); `inventory` names the host in errors.
    fn query(&self, host: &str, inventory: &str) -> Result<HostConfig, TransportError> {
        let q = Query {
            host,
            local_user: &self.local.user,
            local_hostname: &self.local.hostname,
            home: &self.local.home,
            uid: self.local.uid,
            exec: &run_match_exec,
        };
        ssh_config_eval::evaluate(&self.items, &q).map_err(|e| TransportError::SshConfig {
            host: inventory.to_string(),
            file: e.at.file.to_path_buf(),
            line: e.at.line,
            detail: e.detail,
        })
    }
}

/// `Match exec`: the command run by the user's shell, as OpenSSH runs it (its output is not
/// shown: it would break into the progress display).
fn run_match_exec(command: &str) -> bool {
    let shell = std::env::var("SHELL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "/bin/sh".into());
    std::process::Command::new(shell)
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
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

/// Which ssh-agent a session uses (`IdentityAgent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AgentChoice {
    /// fleetup's own setting (`$SSH_AUTH_SOCK` by default).
    Default,
    /// `IdentityAgent none`.
    Disabled,
    Socket(PathBuf),
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
    pub agent: AgentChoice,
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
    let p = config.query(query, &target.name)?;
    let hostname = match &target.address {
        Some(a) => a.clone(),
        None => config_hostname(&p, &target.name),
    };
    let spec = target.proxy_jump.clone().or_else(|| p.proxy_jump.clone());
    let jumps = parse_proxy_jump(spec.as_deref().unwrap_or_default()).map_err(|detail| {
        TransportError::ProxyJumpSpec {
            host: target.name.clone(),
            spec: spec.clone().unwrap_or_default(),
            detail,
        }
    })?;
    let identity_files = match &target.identity_file {
        Some(f) => vec![expand_tilde(f)],
        None => paths(&p.identity_files),
    };
    Ok(Resolved {
        name: target.name.clone(),
        hostname,
        port: target.port.or(p.port).unwrap_or(22),
        user: target
            .user
            .clone()
            .or_else(|| p.user.clone())
            .unwrap_or_else(|| default_user.to_string()),
        identity_files,
        certificate_files: paths(&p.certificate_files),
        agent: agent_choice(p.identity_agent.as_deref()),
        jumps,
        connect_timeout: target
            .connect_timeout
            .or(p.connect_timeout)
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        keepalive_interval: p
            .server_alive_interval
            .filter(|d| !d.is_zero())
            .or(default_keepalive),
    })
}

/// The HostName, with `%h` (the name given) and `%%` expanded.
fn config_hostname(p: &HostConfig, given: &str) -> String {
    p.hostname.as_deref().map_or_else(
        || given.to_string(),
        |h| h.replace("%h", given).replace("%%", "%"),
    )
}

fn paths(list: &[String]) -> Vec<PathBuf> {
    list.iter().map(|f| expand_tilde(Path::new(f))).collect()
}

/// `IdentityAgent`: `none`, `SSH_AUTH_SOCK` (the variable), or a path with `~` and
/// `${VAR}`s.
fn agent_choice(value: Option<&str>) -> AgentChoice {
    match value {
        None => AgentChoice::Default,
        Some("none") => AgentChoice::Disabled,
        Some("SSH_AUTH_SOCK") => std::env::var_os("SSH_AUTH_SOCK")
            .filter(|s| !s.is_empty())
            .map_or(AgentChoice::Disabled, |s| AgentChoice::Socket(s.into())),
        Some(path) => AgentChoice::Socket(expand_tilde(Path::new(&expand_env(path)))),
    }
}

/// `${VAR}` replaced by the variable's value (empty when unset).
fn expand_env(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        out.push_str(&std::env::var(&rest[start + 2..start + end]).unwrap_or_default());
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

/// How deep hops may lead to further hops before fleetup calls it a loop.
const MAX_HOPS: usize = 16;

/// The hops to `target`, first connected first, each with the spec it came from. As
/// OpenSSH: for `ProxyJump a,b`, `a` is reached with its own ssh config, its own
/// `ProxyJump` included (recursively), and `b` through `a`; a hop that would jump through
/// itself is an error ("jumphost loop").
pub(crate) fn hops(
    config: &SshConfigFile,
    target: &Resolved,
) -> Result<Vec<(JumpSpec, Resolved)>, TransportError> {
    let mut chain = Vec::new();
    add_hops(config, target, &target.jumps, &mut chain, 0)?;
    Ok(chain)
}

fn add_hops(
    config: &SshConfigFile,
    target: &Resolved,
    specs: &[JumpSpec],
    chain: &mut Vec<(JumpSpec, Resolved)>,
    depth: usize,
) -> Result<(), TransportError> {
    let Some((first, rest)) = specs.split_first() else {
        return Ok(());
    };
    let looped = |spec: &JumpSpec| TransportError::ProxyJumpSpec {
        host: target.name.clone(),
        spec: spec.to_string(),
        detail: "jumphost loop: a hop is reached through itself".into(),
    };
    let hop = resolve_jump(config, target, first)?;
    let own = hop.jumps.first();
    if depth >= MAX_HOPS
        || own.is_some_and(|j| {
            j.host == first.host
                && j.port.unwrap_or(22) == hop.port
                && j.user.as_deref().unwrap_or(&hop.user) == hop.user
        })
    {
        return Err(looped(first));
    }
    add_hops(config, target, &hop.jumps.clone(), chain, depth + 1)?;
    chain.push((
        first.clone(),
        Resolved {
            jumps: Vec::new(),
            ..hop
        },
    ));
    for spec in rest {
        let hop = resolve_jump(config, target, spec)?;
        chain.push((
            spec.clone(),
            Resolved {
                jumps: Vec::new(),
                ..hop
            },
        ));
    }
    Ok(())
}

/// Resolves one jump host: its own ssh config entry applies (its `ProxyJump` included, for
/// [`hops`] to follow); the user defaults to the target's login user, the connect timeout
/// and keepalive to the target's.
fn resolve_jump(
    config: &SshConfigFile,
    target: &Resolved,
    jump: &JumpSpec,
) -> Result<Resolved, TransportError> {
    let p = config.query(&jump.host, &target.name)?;
    let own_jump = p.proxy_jump.as_deref().unwrap_or_default();
    Ok(Resolved {
        name: target.name.clone(),
        hostname: config_hostname(&p, &jump.host),
        port: jump.port.or(p.port).unwrap_or(22),
        user: jump
            .user
            .clone()
            .or_else(|| p.user.clone())
            .unwrap_or_else(|| target.user.clone()),
        identity_files: if p.identity_files.is_empty() {
            target.identity_files.clone()
        } else {
            paths(&p.identity_files)
        },
        certificate_files: if p.certificate_files.is_empty() {
            target.certificate_files.clone()
        } else {
            paths(&p.certificate_files)
        },
        agent: match agent_choice(p.identity_agent.as_deref()) {
            AgentChoice::Default => target.agent.clone(),
            other => other,
        },
        jumps: parse_proxy_jump(own_jump).map_err(|detail| TransportError::ProxyJumpSpec {
            host: target.name.clone(),
            spec: own_jump.to_string(),
            detail,
        })?,
        connect_timeout: p.connect_timeout.unwrap_or(target.connect_timeout),
        keepalive_interval: target.keepalive_interval,
    })
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
        SshConfigFile::load(&path, "me").expect("parse")
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
        let cfg =
            SshConfigFile::load(Path::new("/nonexistent/ssh/config"), "me").expect("missing ok");
        let r = resolve(&cfg, &ConnectTarget::new("h"), "me", None).expect("resolve");
        assert_eq!((r.hostname.as_str(), r.port), ("h", 22));
        assert_eq!(r.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
    }

    fn hop_names(cfg: &SshConfigFile, host: &str) -> Result<Vec<String>, TransportError> {
        let r = resolve(cfg, &ConnectTarget::new(host), "me", None)?;
        Ok(hops(cfg, &r)?
            .into_iter()
            .map(|(spec, hop)| format!("{spec}={}@{}:{}", hop.user, hop.hostname, hop.port))
            .collect())
    }

    #[test]
    fn proxy_jump_recursion_as_openssh() {
        // A hop's own ProxyJump applies to it, recursively; later hops go through the first.
        let cfg = config(
            "Host *.internal\n  ProxyJump gw,inner\nHost gw\n  HostName 10.0.0.1\n  ProxyJump edge\n\
             Host edge\n  User e\n  Port 2222\nHost inner\n  ProxyJump nowhere\n",
        );
        assert_eq!(
            hop_names(&cfg, "db.internal").expect("hops"),
            ["edge=e@edge:2222", "gw=me@10.0.0.1:22", "inner=me@inner:22"]
        );
        // `Host *` applies to the bastion too: it would jump through itself.
        let cfg = config("Host *\n  ProxyJump bastion\n");
        let err = hop_names(&cfg, "web1").unwrap_err();
        assert!(err.to_string().contains("jumphost loop"), "{err}");
        // ...unless the bastion says otherwise first (first value wins).
        let cfg = config("Host bastion\n  ProxyJump none\nHost *\n  ProxyJump bastion\n");
        assert_eq!(
            hop_names(&cfg, "web1").expect("hops"),
            ["bastion=me@bastion:22"]
        );
        // Two hosts jumping through each other.
        let cfg = config("Host a\n  ProxyJump b\nHost b\n  ProxyJump a\n");
        assert!(hop_names(&cfg, "a").is_err());
    }

    #[test]
    fn identity_agent_choices() {
        assert_eq!(agent_choice(None), AgentChoice::Default);
        assert_eq!(agent_choice(Some("none")), AgentChoice::Disabled);
        std::env::set_var("FLEETUP_TEST_AGENT_DIR", "/run/agents");
        assert_eq!(
            agent_choice(Some("${FLEETUP_TEST_AGENT_DIR}/a.sock")),
            AgentChoice::Socket("/run/agents/a.sock".into())
        );
    }
}
