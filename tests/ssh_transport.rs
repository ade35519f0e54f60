//! The SSH transport against real OpenSSH servers (never a mock, never with host key
//! checking off).
//!
//! TEMPORARY FIXTURE: the shared test fleet (`tests/fleet`, branch `fleet`) had not landed
//! when these tests were written, so `fixture` below is the smallest sshd launcher that
//! proves the transport: one `sshd -D` per test on a free loopback port, with its own host
//! key, authorized_keys and log, and a plain non-root login user `sshtest` (created once,
//! which needs root). Replace it with the fleet harness once that is merged.
//!
//! Run as root (user creation, root login, network namespace for the blackhole test).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use fleetup::ssh::{HostKeyChecking, SshOptions, SshTransport};
use fleetup::transport::{
    CancellationToken, ConnectTarget, Connection, ErrorClass, ExecRequest, ExitStatus,
    OutputStream, Transport, TransportError,
};

mod fixture {
    use super::*;

    pub const USER: &str = "sshtest";

    /// Creates the non-root login user once (`usermod -p '*'`: a new account is locked
    /// for key logins when sshd runs without PAM).
    pub fn ensure_user() {
        static DONE: OnceLock<()> = OnceLock::new();
        DONE.get_or_init(|| {
            let exists = Command::new("id")
                .arg(USER)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !exists {
                sh(&format!("useradd -m -s /bin/bash {USER}"));
            }
            sh(&format!("usermod -p '*' {USER}"));
            if has_sudo() {
                // become: root without a password, any other user with one.
                let rule = format!("{USER} ALL=(root) NOPASSWD: ALL\n");
                let path = "/etc/sudoers.d/fleetup-test-sshtest";
                std::fs::write(path, rule).expect("sudoers");
                sh(&format!("chmod 440 {path}"));
            }
            std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        });
    }

    pub fn has_sudo() -> bool {
        Path::new("/usr/bin/sudo").exists()
    }

    pub fn sh(cmd: &str) -> String {
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(cmd)
            .output()
            .expect("run sh");
        assert!(
            out.status.success(),
            "`{cmd}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn keygen(path: &Path, kind: &str, passphrase: &str) {
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

    pub fn free_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    }

    /// One sshd, its files in a temp dir. Dropping it stops the server.
    pub struct Sshd {
        pub dir: tempfile::TempDir,
        pub port: u16,
        child: Child,
    }

    impl Sshd {
        pub fn start() -> Sshd {
            ensure_user();
            let dir = tempfile::tempdir().expect("tempdir");
            let d = dir.path();
            keygen(&d.join("host_ed25519"), "ed25519", "");
            keygen(&d.join("id_ed25519"), "ed25519", "");
            std::fs::copy(d.join("id_ed25519.pub"), d.join("authorized_keys")).expect("copy");
            std::fs::write(
                d.join("sshd_config"),
                format!(
                    "HostKey {d}/host_ed25519\nPidFile none\nUsePAM no\nAuthorizedKeysFile {d}/authorized_keys\n\
                     StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                     PermitRootLogin prohibit-password\nListenAddress 127.0.0.1\nAllowTcpForwarding yes\n",
                    d = d.display()
                ),
            )
            .expect("config");
            // World-readable so that the login user's commands can read test files there.
            sh(&format!("chmod 755 {}", d.display()));
            for _ in 0..5 {
                let port = free_port();
                let mut child = Command::new("/usr/sbin/sshd")
                    .arg("-D")
                    .arg("-f")
                    .arg(d.join("sshd_config"))
                    .arg("-E")
                    .arg(d.join("sshd.log"))
                    .args(["-p", &port.to_string(), "-o", "MaxStartups=400"])
                    .stdin(Stdio::null())
                    .spawn()
                    .expect("start sshd");
                let t0 = Instant::now();
                while t0.elapsed() < Duration::from_secs(5) {
                    if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                        let sshd = Sshd { dir, port, child };
                        sshd.write_known_hosts(&sshd.known_hosts());
                        return sshd;
                    }
                    if let Ok(Some(_)) = child.try_wait() {
                        break; // port taken meanwhile: try another
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
            panic!("sshd did not start");
        }

        pub fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        pub fn known_hosts(&self) -> PathBuf {
            self.path("known_hosts")
        }

        pub fn host_key_line(&self) -> String {
            let pubkey = std::fs::read_to_string(self.path("host_ed25519.pub")).expect("pub");
            let mut parts = pubkey.split_whitespace();
            let (alg, b64) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            format!("[127.0.0.1]:{} {alg} {b64}\n", self.port)
        }

        pub fn write_known_hosts(&self, path: &Path) {
            std::fs::write(path, self.host_key_line()).expect("known_hosts");
        }

        pub fn authorize(&self, pubkey_path: &Path) {
            let key = std::fs::read_to_string(pubkey_path).expect("pub");
            let mut all = std::fs::read_to_string(self.path("authorized_keys")).expect("ak");
            all.push_str(&key);
            std::fs::write(self.path("authorized_keys"), all).expect("ak");
        }

        pub fn log(&self) -> String {
            std::fs::read_to_string(self.path("sshd.log")).unwrap_or_default()
        }

        /// Options that trust this server's key only, read no ssh config, use no agent.
        pub fn options(&self) -> SshOptions {
            SshOptions {
                known_hosts: self.known_hosts(),
                host_key_checking: HostKeyChecking::Strict,
                passphrase_env: None,
                prompt_passphrase: false,
                ssh_config: None,
                agent_socket: None,
                default_identity_files: Vec::new(),
                default_user: USER.into(),
                ..SshOptions::default()
            }
        }

        pub fn target(&self, name: &str) -> ConnectTarget {
            ConnectTarget {
                address: Some("127.0.0.1".into()),
                port: Some(self.port),
                user: Some(USER.into()),
                identity_file: Some(self.path("id_ed25519")),
                connect_timeout: Some(Duration::from_secs(10)),
                ..ConnectTarget::new(name)
            }
        }
    }

    impl Drop for Sshd {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
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
            let t0 = Instant::now();
            while !socket.exists() && t0.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(10));
            }
            Agent { socket, child }
        }

        pub fn add(&self, key: &Path) {
            let ok = Command::new("ssh-add")
                .arg(key)
                .env("SSH_AUTH_SOCK", &self.socket)
                .stderr(Stdio::null())
                .status()
                .expect("ssh-add")
                .success();
            assert!(ok, "ssh-add");
        }
    }

    impl Drop for Agent {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// A network namespace owning 10.213.7.2, reached over a veth pair, whose route back
    /// to us is a blackhole: a TCP connect to it hangs without sending anything off the
    /// machine. Removed on drop.
    pub struct Blackhole {
        ns: String,
        veth: String,
        pub address: &'static str,
    }

    impl Blackhole {
        pub fn create() -> Blackhole {
            let id = std::process::id() % 100000;
            let ns = format!("fupbh{id}");
            let veth = format!("fupbh{id}a");
            let peer = format!("fupbh{id}b");
            sh(&format!(
                "ip netns add {ns} && ip link add {veth} type veth peer name {peer} && \
                 ip link set {peer} netns {ns} && ip addr add 10.213.7.1/30 dev {veth} && \
                 ip link set {veth} up && ip netns exec {ns} ip addr add 10.213.7.2/30 dev {peer} && \
                 ip netns exec {ns} ip link set {peer} up && \
                 ip netns exec {ns} ip route add blackhole 10.213.7.1/32"
            ));
            Blackhole {
                ns,
                veth,
                address: "10.213.7.2",
            }
        }
    }

    impl Drop for Blackhole {
        fn drop(&mut self) {
            let _ = Command::new("ip")
                .args(["link", "del", &self.veth])
                .status();
            let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        }
    }

    /// Processes whose command line matches (no shell in between: it would match itself).
    pub fn pgrep(pattern: &str) -> String {
        let out = Command::new("pgrep")
            .args(["-a", "-f", pattern])
            .output()
            .expect("pgrep");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits (a little) until nothing matches.
    pub fn wait_gone(pattern: &str) -> String {
        let t0 = Instant::now();
        loop {
            let left = pgrep(pattern);
            if left.is_empty() || t0.elapsed() > Duration::from_secs(3) {
                return left;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

use fixture::{pgrep, wait_gone, Agent, Blackhole, Sshd, USER};

#[derive(Debug)]
struct Output {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

async fn run_req(conn: &Connection, req: &ExecRequest<'_>) -> Result<Output, TransportError> {
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

async fn run(conn: &Connection, cmd: &str) -> Output {
    match run_req(conn, &ExecRequest::new(cmd)).await {
        Ok(o) => o,
        Err(e) => panic!("`{cmd}`: {e}"),
    }
}

async fn connect(
    options: SshOptions,
    target: &ConnectTarget,
) -> Result<Connection, TransportError> {
    Transport::new(options)
        .expect("transport")
        .connect(target)
        .await
}

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).expect("utf8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_exit_codes_signals_streams_and_stdin() {
    let sshd = Sshd::start();
    let conn = Arc::new(
        connect(sshd.options(), &sshd.target("web1"))
            .await
            .expect("connect"),
    );
    assert_eq!(conn.host(), "web1");

    let o = run(&conn, "echo out; echo err >&2; echo out2; exit 3").await;
    assert_eq!(o.status, ExitStatus::Code(3));
    assert_eq!(text(&o.stdout), "out\nout2\n");
    assert_eq!(text(&o.stderr), "err\n");

    let o = run(&conn, "true").await;
    assert!(o.status.success());
    assert!(
        o.stdout.is_empty() && o.stderr.is_empty(),
        "{:?}",
        text(&o.stderr)
    );

    let o = run(&conn, "echo before; kill -TERM $$").await;
    assert_eq!(o.status, ExitStatus::Signal("TERM".into()));
    assert_eq!(text(&o.stdout), "before\n");
    let o = run(&conn, "kill -KILL $$").await;
    assert_eq!(o.status, ExitStatus::Signal("KILL".into()));

    let req = ExecRequest::new("tr a-z A-Z; echo done >&2").stdin(b"hello stdin\n");
    let o = run_req(&conn, &req).await.expect("stdin");
    assert_eq!(text(&o.stdout), "HELLO STDIN\n");
    assert_eq!(text(&o.stderr), "done\n");

    // Without stdin bytes the command sees EOF, not a hang.
    let o = run(&conn, "cat; echo eof").await;
    assert_eq!(text(&o.stdout), "eof\n");

    // A command not found is an exit code, with the shell's message on stderr.
    let o = run(&conn, "no-such-command-xyz").await;
    assert_eq!(o.status, ExitStatus::Code(127));
    assert!(text(&o.stderr).contains("not found"), "{}", text(&o.stderr));

    // The connection is shared: concurrent commands, each in its own channel.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            let o = run(&conn, &format!("sleep 0.2; echo {i}; echo e{i} >&2")).await;
            assert_eq!(text(&o.stdout), format!("{i}\n"));
            assert_eq!(text(&o.stderr), format!("e{i}\n"));
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_megabytes_arrive_whole_and_in_order() {
    let sshd = Sshd::start();
    let conn = connect(sshd.options(), &sshd.target("big"))
        .await
        .expect("connect");
    let t0 = Instant::now();
    let o = run(&conn, "seq 1 200000 >&2 & seq 1 1500000; wait").await;
    let took = t0.elapsed();
    let expect = |n: u32| {
        let mut s = String::new();
        for i in 1..=n {
            s.push_str(&i.to_string());
            s.push('\n');
        }
        s
    };
    assert!(o.status.success());
    assert!(o.stdout.len() > 10_000_000, "{}", o.stdout.len());
    assert!(o.stdout == expect(1_500_000).as_bytes(), "stdout differs");
    assert!(o.stderr == expect(200_000).as_bytes(), "stderr differs");
    eprintln!(
        "MEASURE: {} bytes of stdout + {} of stderr in {took:?}",
        o.stdout.len(),
        o.stderr.len()
    );
    conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_key_is_refused_and_nothing_runs() {
    let sshd = Sshd::start();
    std::fs::write(sshd.known_hosts(), "").expect("empty known_hosts");
    let err = connect(sshd.options(), &sshd.target("newhost"))
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(err, TransportError::HostKeyUnknown { .. }),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Unreachable);
    let msg = err.to_string();
    assert!(msg.starts_with("newhost: "), "{msg}");
    assert!(
        msg.contains(&format!(
            "ssh-keyscan -p {} 127.0.0.1 >> {}",
            sshd.port,
            sshd.known_hosts().display()
        )),
        "{msg}"
    );
    assert!(msg.contains("accept-new"), "{msg}");
    assert!(msg.contains("SHA256:"), "{msg}");
    // Refused at the handshake: never authenticated, so nothing could run.
    assert!(!sshd.log().contains("Accepted publickey"), "{}", sshd.log());
    assert_eq!(
        std::fs::read_to_string(sshd.known_hosts()).expect("read"),
        ""
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_host_key_is_refused_loudly_even_with_accept_new() {
    let sshd = Sshd::start();
    let other = sshd.path("other_host");
    fixture::keygen(&other, "ed25519", "");
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).expect("pub");
    let other_key: Vec<&str> = other_pub.split_whitespace().take(2).collect();
    std::fs::write(
        sshd.known_hosts(),
        format!(
            "# fleet\n[127.0.0.1]:{} {} {}\n",
            sshd.port, other_key[0], other_key[1]
        ),
    )
    .expect("write");
    for policy in [HostKeyChecking::Strict, HostKeyChecking::AcceptNew] {
        let options = SshOptions {
            host_key_checking: policy,
            ..sshd.options()
        };
        let err = connect(options, &sshd.target("db1"))
            .await
            .err()
            .expect("refused");
        match &err {
            TransportError::HostKeyChanged {
                line, known_hosts, ..
            } => {
                assert_eq!(*line, 2);
                assert_eq!(known_hosts, &sshd.known_hosts());
            }
            other => panic!("{other}"),
        }
        assert!(err.is_unreachable());
        let msg = err.to_string();
        eprintln!("MESSAGE: {msg}");
        assert!(msg.contains("HAS CHANGED"), "{msg}");
        assert!(
            msg.contains(&format!("{} line 2", sshd.known_hosts().display())),
            "{msg}"
        );
    }
    assert!(!sshd.log().contains("Accepted publickey"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_new_records_the_key_then_strict_accepts_it() {
    let sshd = Sshd::start();
    let kh = sshd.path("kh_new");
    let options = SshOptions {
        known_hosts: kh.clone(),
        host_key_checking: HostKeyChecking::AcceptNew,
        ..sshd.options()
    };
    let conn = connect(options, &sshd.target("fresh"))
        .await
        .expect("accept-new");
    assert!(run(&conn, "true").await.status.success());
    conn.close().await;
    assert_eq!(
        std::fs::read_to_string(&kh).expect("recorded"),
        sshd.host_key_line()
    );

    let strict = SshOptions {
        known_hosts: kh,
        ..sshd.options()
    };
    let conn = connect(strict, &sshd.target("fresh"))
        .await
        .expect("strict now");
    conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashed_known_hosts_entries_are_understood() {
    let sshd = Sshd::start();
    fixture::sh(&format!(
        "ssh-keygen -q -H -f {} 2>/dev/null",
        sshd.known_hosts().display()
    ));
    let hashed = std::fs::read_to_string(sshd.known_hosts()).expect("read");
    assert!(hashed.starts_with("|1|"), "{hashed}");
    let conn = connect(sshd.options(), &sshd.target("hashed"))
        .await
        .expect("hashed entry");
    conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_types_rsa_ecdsa_and_ssh_config() {
    let sshd = Sshd::start();
    for kind in ["rsa", "ecdsa"] {
        let key = sshd.path(&format!("id_{kind}"));
        fixture::keygen(&key, kind, "");
        sshd.authorize(&key.with_extension("pub"));
        let target = ConnectTarget {
            identity_file: Some(key),
            ..sshd.target(kind)
        };
        let conn = connect(sshd.options(), &target)
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert!(run(&conn, "true").await.status.success());
        conn.close().await;
    }

    // Everything from ~/.ssh/config: the inventory names only the alias.
    let config = sshd.path("ssh_config");
    std::fs::write(
        &config,
        format!(
            "Host sl-*\n  HostName 127.0.0.1\n  Port {}\n  User {USER}\n  IdentityFile {}\n  ConnectTimeout 5\n  ServerAliveInterval 15\n  ForwardAgent no\n",
            sshd.port,
            sshd.path("id_ed25519").display()
        ),
    )
    .expect("config");
    let options = SshOptions {
        ssh_config: Some(config),
        default_user: "nobody-by-default".into(),
        ..sshd.options()
    };
    let conn = connect(options, &ConnectTarget::new("sl-alias"))
        .await
        .expect("via ssh config");
    assert_eq!(
        text(&run(&conn, "id -un").await.stdout),
        format!("{USER}\n")
    );
    conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_key_with_passphrase_from_env_var() {
    let sshd = Sshd::start();
    let key = sshd.path("id_enc");
    fixture::keygen(&key, "ed25519", "s3cret pass");
    sshd.authorize(&key.with_extension("pub"));
    let target = ConnectTarget {
        identity_file: Some(key.clone()),
        ..sshd.target("enc")
    };
    std::env::set_var("FLEETUP_TEST_PASSPHRASE_OK", "s3cret pass");
    let options = SshOptions {
        passphrase_env: Some("FLEETUP_TEST_PASSPHRASE_OK".into()),
        ..sshd.options()
    };
    let conn = connect(options, &target)
        .await
        .expect("decrypted with env passphrase");
    assert!(run(&conn, "true").await.status.success());
    conn.close().await;

    // The variable unset, no terminal: a clear error naming the key and the variable.
    let options = SshOptions {
        passphrase_env: Some("FLEETUP_TEST_PASSPHRASE_UNSET".into()),
        ..sshd.options()
    };
    let err = connect(options, &target)
        .await
        .err()
        .expect("no passphrase");
    assert!(matches!(err, TransportError::Key { .. }), "{err}");
    eprintln!("MESSAGE: {err}");
    let msg = err.to_string();
    assert!(
        msg.contains("encrypted") && msg.contains("$FLEETUP_TEST_PASSPHRASE_UNSET"),
        "{msg}"
    );
    assert!(msg.contains(&key.display().to_string()), "{msg}");

    // A wrong passphrase says so.
    std::env::set_var("FLEETUP_TEST_PASSPHRASE_BAD", "nope");
    let options = SshOptions {
        passphrase_env: Some("FLEETUP_TEST_PASSPHRASE_BAD".into()),
        ..sshd.options()
    };
    let err = connect(options, &target)
        .await
        .err()
        .expect("bad passphrase");
    assert!(err.to_string().contains("does not open it"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_authentication() {
    let sshd = Sshd::start();
    let agent = Agent::start(sshd.dir.path());
    agent.add(&sshd.path("id_ed25519"));
    let options = SshOptions {
        agent_socket: Some(agent.socket.clone()),
        ..sshd.options()
    };
    let target = ConnectTarget {
        identity_file: None,
        ..sshd.target("agent")
    };
    let conn = connect(options, &target).await.expect("agent auth");
    assert!(run(&conn, "true").await.status.success());
    conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_key_is_tried_last() {
    let sshd = Sshd::start();
    let options = SshOptions {
        default_identity_files: vec![sshd.path("id_missing"), sshd.path("id_ed25519")],
        ..sshd.options()
    };
    let target = ConnectTarget {
        identity_file: None,
        ..sshd.target("default-key")
    };
    let conn = connect(options, &target).await.expect("default key");
    conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentication_is_unreachable_and_lists_what_was_tried() {
    let sshd = Sshd::start();
    let stranger = sshd.path("id_stranger");
    fixture::keygen(&stranger, "ed25519", "");
    let agent = Agent::start(sshd.dir.path());
    let options = SshOptions {
        agent_socket: Some(agent.socket.clone()),
        ..sshd.options()
    };
    let target = ConnectTarget {
        identity_file: Some(stranger.clone()),
        ..sshd.target("locked")
    };
    let err = connect(options, &target).await.err().expect("auth fails");
    assert!(matches!(err, TransportError::AuthFailed { .. }), "{err}");
    eprintln!("MESSAGE: {err}");
    assert_eq!(err.class(), ErrorClass::Unreachable);
    let msg = err.to_string();
    assert!(
        msg.starts_with("locked: authentication as \"sshtest\" failed"),
        "{msg}"
    );
    assert!(msg.contains(&stranger.display().to_string()), "{msg}");
    assert!(msg.contains("ssh-agent at"), "{msg}");

    // A missing identity file is named.
    let target = ConnectTarget {
        identity_file: Some(sshd.path("no_such_key")),
        ..sshd.target("nokey")
    };
    let err = connect(sshd.options(), &target)
        .await
        .err()
        .expect("no key file");
    assert!(matches!(err, TransportError::Key { .. }), "{err}");
    eprintln!("MESSAGE: {err}");
    assert!(err.to_string().contains("no_such_key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_blackholed_addresses_are_unreachable_within_the_timeout() {
    let sshd = Sshd::start();
    let closed = fixture::free_port();
    let target = ConnectTarget {
        port: Some(closed),
        ..sshd.target("down")
    };
    let t0 = Instant::now();
    let err = connect(sshd.options(), &target)
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, TransportError::Refused { .. }), "{err}");
    eprintln!("MESSAGE: {err}");
    assert!(err.is_unreachable());
    assert!(t0.elapsed() < Duration::from_secs(1));

    let hole = Blackhole::create();
    let target = ConnectTarget {
        address: Some(hole.address.into()),
        port: Some(22),
        connect_timeout: Some(Duration::from_secs(2)),
        ..sshd.target("blackholed")
    };
    let t0 = Instant::now();
    let err = connect(sshd.options(), &target)
        .await
        .err()
        .expect("timeout");
    let took = t0.elapsed();
    assert!(
        matches!(err, TransportError::ConnectTimeout { .. }),
        "{err}"
    );
    assert!(err.is_unreachable());
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_millis(3500),
        "{took:?}"
    );
    assert!(err.to_string().contains("connect timeout of 2s"), "{err}");

    // A TCP port that accepts but never speaks SSH: the handshake is within the timeout too.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let target = ConnectTarget {
        port: Some(silent.local_addr().expect("addr").port()),
        connect_timeout: Some(Duration::from_secs(1)),
        ..sshd.target("silent")
    };
    let t0 = Instant::now();
    let err = connect(sshd.options(), &target)
        .await
        .err()
        .expect("timeout");
    assert!(
        matches!(err, TransportError::ConnectTimeout { .. }),
        "{err}"
    );
    assert!(t0.elapsed() < Duration::from_millis(2000));

    let target = ConnectTarget {
        address: Some("no-such-host.invalid".into()),
        ..sshd.target("typo")
    };
    let err = connect(sshd.options(), &target).await.err().expect("dns");
    assert!(matches!(err, TransportError::Dns { .. }), "{err}");
}

/// Runs a command that outlives its timeout and checks no process of it is left.
async fn timeout_leaves_nothing(conn: &Connection, tag: u32, ignore_term: bool) {
    let trap = if ignore_term { "trap '' TERM; " } else { "" };
    let cmd = format!("{trap}echo started; sleep {tag}1 & sleep {tag}2; echo never");
    let t0 = Instant::now();
    let mut stdout = Vec::new();
    let req = ExecRequest::new(&cmd).timeout(Duration::from_secs(1));
    let err = conn
        .exec(&req, &mut |s, d: &[u8]| {
            if s == OutputStream::Stdout {
                stdout.extend_from_slice(d)
            }
        })
        .await
        .expect_err("timed out");
    let took = t0.elapsed();
    assert!(
        matches!(err, TransportError::CommandTimedOut { .. }),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Failed);
    assert_eq!(text(&stdout), "started\n");
    let left = wait_gone(&format!("sleep {tag}[12]"));
    assert!(left.is_empty(), "left running after the timeout: {left}");
    eprintln!("MEASURE: timeout (ignore TERM: {ignore_term}) returned after {took:?}");
    // The connection is still usable.
    assert!(run(conn, "true").await.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_command_is_terminated_on_the_host_non_root() {
    let sshd = Sshd::start();
    let conn = connect(sshd.options(), &sshd.target("nonroot"))
        .await
        .expect("connect");
    timeout_leaves_nothing(&conn, 4301, false).await;
    timeout_leaves_nothing(&conn, 4302, true).await;
    conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_command_is_terminated_on_the_host_root() {
    let sshd = Sshd::start();
    let target = ConnectTarget {
        user: Some("root".into()),
        ..sshd.target("rootlogin")
    };
    let conn = connect(sshd.options(), &target).await.expect("connect");
    assert_eq!(text(&run(&conn, "id -u").await.stdout), "0\n");
    timeout_leaves_nothing(&conn, 4311, false).await;
    timeout_leaves_nothing(&conn, 4312, true).await;

    // Stopped while root's slow login shell is still starting, before the command's
    // process group id is known (the token fallback), or just after.
    for ms in [5, 30, 100, 200] {
        let req = ExecRequest::new("sleep 43131").timeout(Duration::from_millis(ms));
        let err = run_req(&conn, &req).await.expect_err("timeout");
        assert!(
            matches!(err, TransportError::CommandTimedOut { .. }),
            "{err}"
        );
        let left = wait_gone("sleep 43131");
        assert!(
            left.is_empty(),
            "left running after a {ms} ms timeout: {left}"
        );
    }
    conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn become_runs_through_sudo_and_is_terminated_as_root() {
    if !fixture::has_sudo() {
        eprintln!("SKIPPED: sudo is not installed (apt-get install sudo) - become untested");
        return;
    }
    let sshd = Sshd::start();
    let conn = connect(sshd.options(), &sshd.target("becomer"))
        .await
        .expect("connect");
    let req = ExecRequest::new("id -u; echo \"$0\" >&2").become_user(None);
    let o = run_req(&conn, &req).await.expect("become root");
    assert_eq!(text(&o.stdout), "0\n");
    assert_eq!(text(&o.stderr), "/bin/sh\n");

    // sudo wants a password for this user: a clear error, not an exit code.
    let req = ExecRequest::new("id -u").become_user(Some("nobody".into()));
    let err = run_req(&conn, &req).await.expect_err("password required");
    assert!(
        matches!(err, TransportError::BecomePasswordRequired { .. }),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Failed);
    assert!(
        err.to_string()
            .contains("sudo requires a password for sshtest"),
        "{err}"
    );

    // A root process started through sudo by a non-root login is killed too.
    let req = ExecRequest::new("trap '' TERM; sleep 43311 & sleep 43312")
        .become_user(None)
        .timeout(Duration::from_secs(1));
    let err = run_req(&conn, &req).await.expect_err("timeout");
    assert!(
        matches!(err, TransportError::CommandTimedOut { .. }),
        "{err}"
    );
    let left = wait_gone("sleep 4331[12]");
    assert!(left.is_empty(), "left running: {left}");
    conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_command_is_terminated() {
    let sshd = Sshd::start();
    let conn = connect(sshd.options(), &sshd.target("cancel"))
        .await
        .expect("connect");
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        t.cancel();
    });
    let req = ExecRequest::new("sleep 43211").cancel(token);
    let err = run_req(&conn, &req).await.expect_err("cancelled");
    assert!(matches!(err, TransportError::Cancelled { .. }), "{err}");
    let left = wait_gone("sleep 43211");
    assert!(left.is_empty(), "{left}");
    conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_dropped_mid_command_is_connection_lost() {
    let sshd = Sshd::start();
    let conn = connect(sshd.options(), &sshd.target("flaky"))
        .await
        .expect("connect");
    // The command kills its own sshd session process: the TCP connection drops.
    let mut out = Vec::new();
    let t0 = Instant::now();
    let err = conn
        .exec(
            &ExecRequest::new("echo $$; sleep 0.3; kill -9 $PPID; exec sleep 43221"),
            &mut |_, d: &[u8]| out.extend_from_slice(d),
        )
        .await
        .expect_err("lost");
    assert!(
        matches!(err, TransportError::ConnectionLost { .. }),
        "{err}"
    );
    assert!(err.is_unreachable());
    assert!(t0.elapsed() < Duration::from_secs(5));
    // Clean up the orphan by its pid (it printed it).
    let pid = text(&out).trim().to_string();
    let _ = Command::new("kill").args(["-9", &pid]).status();
    // Later commands on the lost connection say so at once.
    let err = run_req(&conn, &ExecRequest::new("true"))
        .await
        .expect_err("lost");
    assert!(
        matches!(err, TransportError::ConnectionLost { .. }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_detects_a_host_that_stopped_answering() {
    let sshd = Sshd::start();
    let options = SshOptions {
        keepalive_interval: Some(Duration::from_secs(1)),
        keepalive_max: 2,
        ..sshd.options()
    };
    let conn = connect(options, &sshd.target("frozen"))
        .await
        .expect("connect");
    // The command freezes its sshd session process (SIGSTOP): the host stops answering
    // without closing the connection, as a dead host or cut network would.
    let mut out = Vec::new();
    let t0 = Instant::now();
    let err = conn
        .exec(
            &ExecRequest::new("echo $PPID $$; sleep 0.3; kill -STOP $PPID; exec sleep 43231"),
            &mut |_, d: &[u8]| out.extend_from_slice(d),
        )
        .await
        .expect_err("lost");
    let took = t0.elapsed();
    for pid in text(&out).split_whitespace() {
        let _ = Command::new("kill").args(["-9", pid]).status();
    }
    assert!(
        matches!(err, TransportError::ConnectionLost { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("keepalive"), "{err}");
    // 3 intervals of 1 s without an answer (and not much more).
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "{took:?}"
    );
    eprintln!("MEASURE: frozen host declared lost after {took:?} (keepalive 1 s x 2)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_jump_through_a_bastion_with_its_key_verified() {
    let bastion = Sshd::start();
    let host = Sshd::start();
    let kh = host.path("kh_both");
    std::fs::write(
        &kh,
        format!("{}{}", bastion.host_key_line(), host.host_key_line()),
    )
    .expect("kh");
    // Both servers accept the same key.
    host.authorize(&bastion.path("id_ed25519.pub"));
    let options = SshOptions {
        known_hosts: kh.clone(),
        ..host.options()
    };
    let jump = format!("{USER}@127.0.0.1:{}", bastion.port);
    let target = ConnectTarget {
        proxy_jump: Some(jump.clone()),
        identity_file: Some(bastion.path("id_ed25519")),
        ..host.target("behind")
    };
    let conn = connect(options.clone(), &target)
        .await
        .expect("through bastion");
    let o = run(&conn, "echo via; echo $SSH_CONNECTION").await;
    assert!(text(&o.stdout).starts_with("via\n"));
    assert!(
        bastion.log().contains("Accepted publickey"),
        "bastion not used"
    );
    assert!(host.log().contains("Accepted publickey"));
    conn.close().await;

    // Two hops (the bastion twice).
    let target2 = ConnectTarget {
        proxy_jump: Some(format!("{jump},{jump}")),
        ..target.clone()
    };
    let conn = connect(options, &target2).await.expect("two hops");
    assert!(run(&conn, "true").await.status.success());
    conn.close().await;

    // The bastion's own key is verified: unknown bastion, refused, named.
    std::fs::write(&kh, host.host_key_line()).expect("kh");
    let options = SshOptions {
        known_hosts: kh,
        ..host.options()
    };
    let err = connect(options, &target)
        .await
        .err()
        .expect("bastion refused");
    match &err {
        TransportError::ProxyJump {
            jump: j, source, ..
        } => {
            assert_eq!(j, &jump);
            assert!(
                matches!(**source, TransportError::HostKeyUnknown { .. }),
                "{source}"
            );
        }
        other => panic!("{other}"),
    }
    assert!(err.is_unreachable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_connections_at_once() {
    let sshd = Sshd::start();
    let transport = Arc::new(Transport::new(sshd.options()).expect("transport"));

    // One connection alone, and the cost of a command on an open connection.
    let t0 = Instant::now();
    let conn = transport
        .connect(&sshd.target("solo"))
        .await
        .expect("connect");
    let connect_one = t0.elapsed();
    run(&conn, "true").await;
    let n = 50;
    let t0 = Instant::now();
    for _ in 0..n {
        run(&conn, "true").await;
    }
    let per_exec = t0.elapsed() / n;
    conn.close().await;

    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let transport = transport.clone();
        let target = sshd.target(&format!("h{i:03}"));
        tasks.push(tokio::spawn(async move {
            let conn = transport.connect(&target).await?;
            let o = run_req(&conn, &ExecRequest::new("echo $0")).await?;
            Ok::<_, TransportError>((conn, o))
        }));
    }
    let mut conns = Vec::new();
    let mut failures = Vec::new();
    for t in tasks {
        match t.await.expect("task") {
            Ok((c, o)) => {
                assert!(o.status.success());
                conns.push(c);
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    let all = t0.elapsed();
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    let t0 = Instant::now();
    futures::future::join_all(conns.iter().map(|c| c.close())).await;
    let close_all = t0.elapsed();
    eprintln!(
        "MEASURE: connect+auth one host {connect_one:?}; exec `true` on an open connection {per_exec:?}; \
         200 hosts connected + one command each {all:?}; closed in {close_all:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_transport_runs_through_sh() {
    let transport = Transport::new(SshOptions {
        ssh_config: None,
        ..SshOptions::default()
    })
    .expect("transport");
    let target = ConnectTarget {
        kind: fleetup::transport::ConnectionKind::Local,
        ..ConnectTarget::new("controller")
    };
    let conn = transport.connect(&target).await.expect("local");
    let o = run(&conn, "echo out; echo err >&2; exit 4").await;
    assert_eq!(o.status, ExitStatus::Code(4));
    assert_eq!((text(&o.stdout), text(&o.stderr)), ("out\n", "err\n"));
    let o = run(&conn, "kill -TERM $$").await;
    assert_eq!(o.status, ExitStatus::Signal("TERM".into()));
    let o = run_req(&conn, &ExecRequest::new("cat").stdin(b"in"))
        .await
        .expect("stdin");
    assert_eq!(text(&o.stdout), "in");
    let req = ExecRequest::new("trap '' TERM; sleep 43241 & sleep 43242")
        .timeout(Duration::from_millis(300));
    let err = run_req(&conn, &req).await.expect_err("timeout");
    assert!(
        matches!(err, TransportError::CommandTimedOut { .. }),
        "{err}"
    );
    let left = wait_gone("sleep 4324[12]");
    assert!(left.is_empty(), "{left}");
    assert!(pgrep("sleep 4324[12]").is_empty());
}

#[allow(dead_code)]
fn _assert_types_are_shareable() {
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<Connection>();
    is_send_sync::<Transport>();
    let _ = SshTransport::new;
    let _: Option<Mutex<()>> = None;
}
