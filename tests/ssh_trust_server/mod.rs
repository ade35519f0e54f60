//! Real SSH servers on loopback for the trust tests: an OpenSSH `sshd` or a `dropbear`, each
//! with host keys made by `ssh-keygen` / `dropbearkey` in its own directory, and the
//! OpenSSH client `ssh` run on the same files as the reference verdict.
//!
//! One login user (`fleetup-trust`, a clean non-root account) and one client key, made
//! once per test binary and authorized in the user's `~/.ssh/authorized_keys` (dropbear
//! reads only that file).

#![allow(dead_code)] // each test binary uses part of it

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fleetup::connect::Transport;
use fleetup::ssh::{HostKeyChecking, SshOptions};
use fleetup::transport::{ConnectTarget, Connection, Connector, ExecRequest, TransportError};

pub const USER: &str = "fleetup-trust";

/// fleetup's options for these tests: this known_hosts and policy (and no global one: the
/// machine's are not the test's), no ssh config, no agent, no default key, never a prompt.
pub fn options(known_hosts: &Path, policy: HostKeyChecking) -> SshOptions {
    SshOptions {
        known_hosts: known_hosts.to_path_buf(),
        global_known_hosts: Vec::new(),
        host_key_checking: policy,
        passphrase_env: None,
        prompt_passphrase: false,
        ssh_config: None,
        agent_socket: None,
        default_identity_files: Vec::new(),
        default_user: "nobody-by-default".into(),
        ..SshOptions::default()
    }
}

/// fleetup connects to `target` and runs `echo ok` there: its verdict on the connection.
pub async fn echo_ok(options: SshOptions, target: &ConnectTarget) -> Result<(), TransportError> {
    let conn = Transport::new(options)
        .expect("transport")
        .connect(target)
        .await?;
    let mut out = Vec::new();
    let status = conn
        .exec(&ExecRequest::new("echo ok"), &mut |_, d: &[u8]| {
            out.extend_from_slice(d)
        })
        .await?;
    conn.close().await;
    assert!(status.success() && out == b"ok\n", "{status:?} {out:?}");
    Ok(())
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `ssh-keygen -t TYPE -N '' -f path` (quiet).
pub fn keygen(path: &Path, kind: &str) {
    let _ = std::fs::remove_file(path);
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-C", "trust-test", "-f"])
        .arg(path));
}

/// `type base64` of a `.pub` file (comment dropped).
pub fn public_key(pub_path: &Path) -> String {
    let text = std::fs::read_to_string(pub_path).expect("public key");
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The client side: a directory and the key the login user accepts.
pub struct Client {
    pub dir: PathBuf,
    pub key: PathBuf,
}

/// Made once per test binary: the user, its authorized key.
pub fn client() -> &'static Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        // Test processes may run at once (a runner like nextest runs one per test): one at a
        // time makes the user and adds its key, which useradd and the append need.
        let lock = std::fs::File::create(std::env::temp_dir().join("fleetup-trust-user.lock"))
            .expect("the user's lock file");
        lock.lock().expect("lock the user's lock file");
        ensure_user();
        let dir = std::env::temp_dir().join(format!("fleetup-trust-client-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("client dir");
        let key = dir.join("id_ed25519");
        keygen(&key, "ed25519");
        let ssh = PathBuf::from(format!("/home/{USER}/.ssh"));
        std::fs::create_dir_all(&ssh).expect(".ssh");
        // Keys of earlier test processes stay valid and harmless.
        let line = std::fs::read(key.with_extension("pub")).expect("pub");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(ssh.join("authorized_keys"))
            .expect("authorized_keys");
        std::io::Write::write_all(&mut file, &line).expect("append to authorized_keys");
        run(Command::new("chown")
            .arg("-R")
            .arg(format!("{USER}:{USER}"))
            .arg(&ssh));
        Client { dir, key }
    })
}

fn ensure_user() {
    let exists = Command::new("id")
        .arg(USER)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !exists {
        run(Command::new("useradd").args(["-m", "-s", "/bin/bash", USER]));
    }
    // A new account is locked ("!"): sshd with UsePAM no refuses key logins for it.
    run(Command::new("usermod").args(["-p", "*", USER]));
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    OpenSsh,
    Dropbear,
}

/// A server on 127.0.0.1, stopped on drop.
pub struct Server {
    pub kind: Kind,
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

impl Server {
    /// An sshd with an Ed25519 host key and `extra` lines of sshd_config.
    pub fn openssh(extra: &str) -> Server {
        Server::openssh_in(tempfile::tempdir().expect("tempdir"), extra)
    }

    /// As [`Server::openssh`], in a directory the test has prepared (host certificates).
    pub fn openssh_in(dir: tempfile::TempDir, extra: &str) -> Server {
        client();
        let host_key = dir.path().join("ssh_host_ed25519_key");
        if !host_key.exists() {
            keygen(&host_key, "ed25519");
        }
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1\nHostKey {}\nPidFile none\nUsePAM no\n\
                 StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 {extra}\n",
                host_key.display()
            ),
        )
        .expect("sshd_config");
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let log = dir.path().join("sshd.log");
        Server::start(Kind::OpenSsh, dir, |port| {
            let mut c = Command::new("/usr/sbin/sshd");
            c.arg("-D").arg("-f").arg(&config).arg("-E").arg(&log);
            c.arg("-p").arg(port.to_string());
            c
        })
    }

    /// A dropbear with an Ed25519 host key (made by dropbearkey).
    pub fn dropbear() -> Server {
        client();
        let dir = tempfile::tempdir().expect("tempdir");
        let host_key = dir.path().join("dropbear_ed25519_host_key");
        run(Command::new("dropbearkey")
            .args(["-t", "ed25519", "-f"])
            .arg(&host_key)
            .stdout(Stdio::null()));
        let pid = dir.path().join("dropbear.pid");
        Server::start(Kind::Dropbear, dir, |port| {
            let mut c = Command::new("dropbear");
            c.args(["-F", "-E", "-s", "-p", &format!("127.0.0.1:{port}"), "-r"]);
            c.arg(&host_key).arg("-P").arg(&pid);
            c
        })
    }

    fn start(kind: Kind, dir: tempfile::TempDir, command: impl Fn(u16) -> Command) -> Server {
        for _ in 0..5 {
            let port = free_port();
            let mut child = command(port)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("server");
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(10) {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Server {
                        kind,
                        dir,
                        port,
                        child,
                    };
                }
                if child.try_wait().ok().flatten().is_some() {
                    break; // the port was taken meanwhile: another one
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("{kind:?} did not start listening");
    }

    /// The host key the server presents, `type base64`.
    pub fn host_key(&self) -> String {
        match self.kind {
            Kind::OpenSsh => public_key(&self.dir.path().join("ssh_host_ed25519_key.pub")),
            Kind::Dropbear => {
                let out = run(Command::new("dropbearkey")
                    .arg("-y")
                    .arg("-f")
                    .arg(self.dir.path().join("dropbear_ed25519_host_key")));
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                let line = text
                    .lines()
                    .find(|l| l.starts_with("ssh-"))
                    .expect("dropbearkey -y");
                line.split_whitespace()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        }
    }

    /// How known_hosts names this server: `[127.0.0.1]:port`.
    pub fn known_name(&self) -> String {
        format!("[127.0.0.1]:{}", self.port)
    }

    /// A known_hosts file in the server's directory with these contents.
    pub fn known_hosts(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("known_hosts");
        path
    }

    /// What the OpenSSH client decides with this known_hosts (strict checking, batch
    /// mode, no config): whether `echo ok` ran, and its stderr.
    pub fn ssh_verdict(&self, known_hosts: &Path, extra: &[&str]) -> (bool, String) {
        let out = self.ssh(known_hosts, extra, &["echo ok"]);
        let ran = out.status.success() && String::from_utf8_lossy(&out.stdout) == "ok\n";
        (ran, String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// `ssh [options] fleetup-trust@127.0.0.1 COMMAND...` with the client's key.
    pub fn ssh(&self, known_hosts: &Path, extra: &[&str], command: &[&str]) -> Output {
        self.ssh_with(known_hosts, Some(&client().key), extra, command)
    }

    /// As [`Server::ssh`] with `-i key` (none: no identity file). `extra` options come
    /// first: for ssh the first value of an option wins.
    pub fn ssh_with(
        &self,
        known_hosts: &Path,
        key: Option<&Path>,
        extra: &[&str],
        command: &[&str],
    ) -> Output {
        let mut c = Command::new("ssh");
        c.args(["-F", "/dev/null", "-p", &self.port.to_string()]);
        if let Some(key) = key {
            c.arg("-i").arg(key);
        }
        c.args(extra)
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .args(SSH_REFERENCE_OPTIONS)
            .arg(format!("{USER}@127.0.0.1"))
            .args(command)
            .stdin(Stdio::null())
            .output()
            .expect("ssh")
    }

    /// `ssh` options that reach this server's targets through it, as `ProxyJump` would, with
    /// the same known_hosts and reference options (`-J` would start an ssh that reads the
    /// default files instead).
    pub fn proxy_command(&self, known_hosts: &Path) -> String {
        format!(
            "ProxyCommand=ssh -F /dev/null -p {} -i {} -o UserKnownHostsFile={} {} -W %h:%p {USER}@127.0.0.1",
            self.port,
            client().key.display(),
            known_hosts.display(),
            SSH_REFERENCE_OPTIONS.join(" ")
        )
    }

    /// An Ansible YAML inventory of one host, `h1`, on this server.
    pub fn inventory(&self) -> PathBuf {
        self.inventory_with(&client().key, "")
    }

    /// As [`Server::inventory`], with this key and more host variables (YAML lines
    /// `name: value`).
    pub fn inventory_with(&self, key: &Path, vars: &str) -> PathBuf {
        let path = self.dir.path().join("inventory.yml");
        let mut text = format!(
            "all:\n  hosts:\n    h1:\n      ansible_host: 127.0.0.1\n      \
             ansible_port: {}\n      ansible_user: {USER}\n      \
             ansible_ssh_private_key_file: {}\n",
            self.port,
            key.display()
        );
        for line in vars.lines() {
            text.push_str(&format!("      {line}\n"));
        }
        std::fs::write(&path, text).expect("inventory");
        path
    }
}

/// Strict, non-interactive, and touching nothing but the files given.
const SSH_REFERENCE_OPTIONS: &[&str] = &[
    "-o",
    "BatchMode=yes",
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    "GlobalKnownHostsFile=/dev/null",
    "-o",
    "UpdateHostKeys=no",
    "-o",
    "CheckHostIP=no",
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    "IdentityAgent=none",
    "-o",
    "ConnectTimeout=10",
];

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `ssh-keygen -H` of a known_hosts text: every unmarked line with its names hashed.
pub fn hashed(dir: &Path, text: &str) -> String {
    let path = dir.join("to_hash");
    std::fs::write(&path, text).expect("write");
    run(Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null()));
    let out = std::fs::read_to_string(&path).expect("hashed");
    let _ = std::fs::remove_file(path.with_extension("old"));
    out
}

/// `ssh-agent -D` on a socket in `dir`, stopped on drop.
pub struct Agent {
    pub socket: PathBuf,
    child: Child,
}

impl Agent {
    pub fn start(dir: &Path) -> Agent {
        let socket = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .spawn()
            .expect("ssh-agent");
        // The socket exists from bind(), before the agent listens: until then a client is
        // refused (and ssh-add fails), so wait for a connection to be accepted.
        let t0 = std::time::Instant::now();
        while std::os::unix::net::UnixStream::connect(&socket).is_err()
            && t0.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        Agent { socket, child }
    }

    /// `ssh-add KEY` (and its `-cert.pub` beside it, if any).
    pub fn add(&self, key: &Path) {
        run(Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.socket)
            .stderr(Stdio::null()));
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
