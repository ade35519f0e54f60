//! The SSH transport against real OpenSSH servers: the simulated SimpleLogin fleet of
//! `tests/fleet` (never a mock, never with host key checking off). The hosts' own command
//! logs prove what ran on them, and `processes_of_host` what is left running.
//!
//! Run as root, like the fleet (root logins; the blackhole test makes a network namespace;
//! the become test writes a sudoers rule for the fleet's login user).

mod fleet;
mod ssh_trust_server;

#[path = "ssh_transport/authentication.rs"]
mod authentication;
#[path = "ssh_transport/commands.rs"]
mod commands;
#[path = "ssh_transport/host_keys.rs"]
mod host_keys;
#[path = "ssh_transport/reaching_hosts.rs"]
mod reaching_hosts;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleet::{sh, Fleet, HostSpec, Spec};
use fleetup::connect::{HostConnection, Transport};
use fleetup::ssh::{HostKeyChecking, SshOptions};
use fleetup::transport::{
    ConnectTarget, Connection, Connector, ErrorClass, ExecRequest, ExitStatus, OutputStream,
    TransportError,
};

const V: &str = "v4.65.0";

fn one() -> Fleet {
    Fleet::start(Spec::new().group("production", "h", 1, V))
}

/// Options that trust the fleet's known_hosts only, read no ssh config, use no agent and
/// no default key, and never prompt.
fn options(f: &Fleet) -> SshOptions {
    ssh_trust_server::options(&f.known_hosts_path(), HostKeyChecking::Strict)
}

/// The host as the fleet's inventory describes it.
fn target(f: &Fleet, name: &str) -> ConnectTarget {
    let h = f.host(name);
    ConnectTarget {
        address: Some("127.0.0.1".into()),
        port: Some(h.port),
        user: Some(h.user.clone()),
        identity_file: Some(f.key_path()),
        connect_timeout: Some(Duration::from_secs(10)),
        ..ConnectTarget::new(name)
    }
}

fn host_key_line(f: &Fleet, name: &str) -> String {
    let key = std::fs::read_to_string(f.dir().join("ssh_host_ed25519_key.pub")).expect("host key");
    let key: Vec<&str> = key.split_whitespace().take(2).collect();
    format!("[127.0.0.1]:{} {}\n", f.port(name), key.join(" "))
}

/// Commands the host's session wrapper saw (what sshd ran on it).
fn sessions(f: &Fleet, name: &str) -> Vec<fleet::CommandRecord> {
    f.commands(name)
        .into_iter()
        .filter(|c| c.kind == "session" && c.ev == "start")
        .collect()
}

fn keygen(path: &Path, kind: &str, passphrase: &str) {
    let _ = std::fs::remove_file(path);
    let mut args = vec![
        "-q",
        "-t",
        kind,
        "-N",
        passphrase,
        "-C",
        "fleetup-test",
        "-f",
    ];
    if kind == "rsa" {
        args.splice(0..0, ["-b", "2048"]);
    }
    let ok = Command::new("ssh-keygen")
        .args(&args)
        .arg(path)
        .status()
        .expect("ssh-keygen")
        .success();
    assert!(ok, "ssh-keygen {kind}");
}

/// Processes whose command line matches (no shell in between: it would match itself).
fn pgrep(pattern: &str) -> String {
    let out = Command::new("pgrep")
        .args(["-a", "-f", pattern])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits (a little) until `left` finds nothing, and returns what it last found.
fn wait_empty<T: std::fmt::Debug>(mut left: impl FnMut() -> Vec<T>) -> Vec<T> {
    let t0 = Instant::now();
    loop {
        let l = left();
        if l.is_empty() || t0.elapsed() > Duration::from_secs(3) {
            return l;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn pgrep_left(pattern: &str) -> Vec<String> {
    wait_empty(|| pgrep(pattern).lines().map(String::from).collect())
}

/// Runs `req`, which is to time out, and checks that nothing matching `pattern` is left.
async fn assert_times_out_leaving_nothing(
    conn: &HostConnection,
    req: &ExecRequest<'_>,
    pattern: &str,
) {
    let err = run_req(conn, req).await.expect_err("timeout");
    assert!(
        matches!(err, TransportError::CommandTimedOut { .. }),
        "{err}"
    );
    let left = pgrep_left(pattern);
    assert!(left.is_empty(), "left running: {left:?}");
}

#[derive(Debug)]
struct Output {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

async fn run_req(conn: &HostConnection, req: &ExecRequest<'_>) -> Result<Output, TransportError> {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let status = conn
        .exec(req, &mut |s, d: &[u8]| match s {
            OutputStream::Stdout => stdout.extend_from_slice(d),
            OutputStream::Stderr => stderr.extend_from_slice(d),
        })
        .await?;
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

async fn run(conn: &HostConnection, cmd: &str) -> Output {
    match run_req(conn, &ExecRequest::new(cmd)).await {
        Ok(o) => o,
        Err(e) => panic!("`{cmd}`: {e}"),
    }
}

async fn connect(
    options: SshOptions,
    target: &ConnectTarget,
) -> Result<HostConnection, TransportError> {
    Transport::new(options)
        .expect("transport")
        .connect(target)
        .await
}

/// h-01, connected with the fleet's options.
async fn connect_h01(f: &Fleet) -> HostConnection {
    connect(options(f), &target(f, "h-01"))
        .await
        .expect("connect")
}

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).expect("utf8")
}
