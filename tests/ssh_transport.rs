//! The SSH transport against real OpenSSH servers: the simulated SimpleLogin fleet of
//! `tests/fleet` (never a mock, never with host key checking off). The hosts' own command
//! logs prove what ran on them, and `processes_of_host` what is left running.
//!
//! Run as root, like the fleet (root logins; the blackhole test makes a network namespace;
//! the become test writes a sudoers rule for the fleet's login user).

mod fleet;
mod ssh_trust_server;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleet::{processes_of_host, rule, sh, Blackhole, Fleet, HostSpec, Spec};
use fleetup::connect::{HostConnection, Transport};
use fleetup::ssh::{HostKeyChecking, SshOptions};
use fleetup::transport::{
    CancellationToken, ConnectTarget, Connection, ConnectionKind, Connector, ErrorClass,
    ExecRequest, ExitStatus, OutputStream, TransportError,
};
use ssh_trust_server::Agent;

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

fn authorize(f: &Fleet, pubkey: &Path) {
    let path = f.dir().join("authorized_keys");
    let mut all = std::fs::read_to_string(&path).expect("authorized_keys");
    all.push_str(&std::fs::read_to_string(pubkey).expect("pub"));
    std::fs::write(&path, all).expect("authorized_keys");
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

/// What is left of a host: pid, state and command line of each of its processes.
fn host_processes(f: &Fleet, host: &str) -> Vec<String> {
    wait_empty(|| {
        processes_of_host(&f.host_dir(host))
            .into_iter()
            .map(|pid| {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                format!("{pid}: {cmd}")
            })
            .collect()
    })
}

fn pgrep_left(pattern: &str) -> Vec<String> {
    wait_empty(|| pgrep(pattern).lines().map(String::from).collect())
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

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).expect("utf8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_exit_codes_signals_streams_and_stdin() {
    let f = one();
    let conn = Arc::new(
        connect(options(&f), &target(&f, "h-01"))
            .await
            .expect("connect"),
    );
    assert_eq!(conn.host(), "h-01");

    let o = run(&conn, "echo out; echo err >&2; echo out2; exit 3").await;
    assert_eq!(o.status, ExitStatus::Code(3));
    assert_eq!(text(&o.stdout), "out\nout2\n");
    assert_eq!(text(&o.stderr), "err\n");
    // The host ran it once, in a session of its own, and saw it exit 3.
    let log = f.commands("h-01");
    let ran: Vec<_> = log.iter().filter(|c| c.cmd.contains("echo out2")).collect();
    assert_eq!(ran.len(), 2, "{log:?}"); // start and end
    assert_eq!(ran[1].rc, Some(3));

    // The simulated host's own tools, through the same connection.
    let o = run(&conn, "docker inspect --format '{{.Config.Image}}' sl-app").await;
    assert_eq!(text(&o.stdout), format!("simplelogin/app-ci:{V}\n"));

    let o = run(&conn, "true").await;
    assert!(o.status.success());
    assert!(
        o.stdout.is_empty() && o.stderr.is_empty(),
        "{:?}",
        text(&o.stderr)
    );

    // Killed by a signal: reported as the signal. (KILL: fleet-sim's session wrapper, as
    // of its first version, starts commands with every other signal blocked.)
    let o = run(&conn, "echo before; kill -KILL $$").await;
    assert_eq!(o.status, ExitStatus::Signal("KILL".into()));
    assert_eq!(text(&o.stdout), "before\n");

    let req = ExecRequest::new("tr a-z A-Z; echo done >&2").stdin(b"hello stdin\n");
    let o = run_req(&conn, &req).await.expect("stdin");
    assert_eq!(text(&o.stdout), "HELLO STDIN\n");
    assert_eq!(text(&o.stderr), "done\n");

    // Without stdin bytes the command sees EOF, not a hang.
    let o = run(&conn, "cat; echo eof").await;
    assert_eq!(text(&o.stdout), "eof\n");

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
    let f = one();
    let conn = connect(options(&f), &target(&f, "h-01"))
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
    let f = one();
    let kh = f.tmp().join("empty_known_hosts");
    std::fs::write(&kh, "").expect("empty known_hosts");
    let opts = SshOptions {
        known_hosts: kh.clone(),
        ..options(&f)
    };
    let err = connect(opts, &target(&f, "h-01"))
        .await
        .expect_err("refused");
    eprintln!("MESSAGE: {err}");
    assert!(
        matches!(err, TransportError::HostKeyUnknown { .. }),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Unreachable);
    let msg = err.to_string();
    assert!(msg.starts_with("h-01: "), "{msg}");
    // The host's own line stays short: the command that adds every unknown host's key
    // comes once, after the fleet (tests/ssh_trust_exec.rs).
    let keyscan = format!("ssh-keyscan -p {} 127.0.0.1`", f.port("h-01"));
    assert!(msg.contains(&keyscan), "{msg}");
    assert!(
        msg.contains(&kh.display().to_string()) && msg.contains("SHA256:"),
        "{msg}"
    );
    assert!(f.commands("h-01").is_empty(), "{:?}", f.commands("h-01"));
    assert_eq!(std::fs::read_to_string(&kh).expect("read"), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_host_key_is_refused_loudly_even_with_accept_new() {
    let f = one();
    let other = f.tmp().join("other_host_key");
    keygen(&other, "ed25519", "");
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).expect("pub");
    let other_key: Vec<&str> = other_pub.split_whitespace().take(2).collect();
    let kh = f.tmp().join("changed_known_hosts");
    std::fs::write(
        &kh,
        format!(
            "# the fleet\n[127.0.0.1]:{} {} {}\n",
            f.port("h-01"),
            other_key[0],
            other_key[1]
        ),
    )
    .expect("write");
    for policy in [HostKeyChecking::Strict, HostKeyChecking::AcceptNew] {
        let opts = SshOptions {
            known_hosts: kh.clone(),
            host_key_checking: policy,
            ..options(&f)
        };
        let err = connect(opts, &target(&f, "h-01"))
            .await
            .expect_err("refused");
        match &err {
            TransportError::HostKeyChanged {
                line, known_hosts, ..
            } => {
                assert_eq!(*line, 2);
                assert_eq!(known_hosts, &kh);
            }
            other => panic!("{other}"),
        }
        assert!(err.is_unreachable());
        let msg = err.to_string();
        eprintln!("MESSAGE: {msg}");
        assert!(msg.contains("HAS CHANGED"), "{msg}");
        assert!(msg.contains(&format!("{} line 2", kh.display())), "{msg}");
    }
    assert!(f.commands("h-01").is_empty(), "{:?}", f.commands("h-01"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_key_of_another_type_is_asked_for_and_never_replaced() {
    let f = one();
    // known_hosts records an ECDSA key for the host, which only has an Ed25519 one: the
    // ECDSA type is asked for first, the host cannot present it, and its Ed25519 key is
    // not taken as new, even under accept-new.
    let other = f.tmp().join("ecdsa_host_key");
    keygen(&other, "ecdsa", "");
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).expect("pub");
    let other_key: Vec<&str> = other_pub.split_whitespace().take(2).collect();
    let kh = f.tmp().join("ecdsa_known_hosts");
    let recorded = format!("[127.0.0.1]:{} {}\n", f.port("h-01"), other_key.join(" "));
    std::fs::write(&kh, &recorded).expect("write");
    for policy in [HostKeyChecking::Strict, HostKeyChecking::AcceptNew] {
        let opts = SshOptions {
            known_hosts: kh.clone(),
            host_key_checking: policy,
            ..options(&f)
        };
        let err = connect(opts, &target(&f, "h-01"))
            .await
            .expect_err("refused");
        eprintln!("MESSAGE: {err}");
        assert!(
            matches!(err, TransportError::HostKeyOtherType { .. }),
            "{err}"
        );
        assert!(err.is_unreachable());
        assert!(err.to_string().contains("(line 1)"), "{err}");
    }
    assert_eq!(std::fs::read_to_string(&kh).expect("read"), recorded);
    assert!(f.commands("h-01").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_new_records_the_key_then_strict_accepts_it() {
    let f = one();
    let kh = f.tmp().join("kh_new");
    let opts = SshOptions {
        known_hosts: kh.clone(),
        host_key_checking: HostKeyChecking::AcceptNew,
        ..options(&f)
    };
    let conn = connect(opts, &target(&f, "h-01"))
        .await
        .expect("accept-new");
    assert!(run(&conn, "true").await.status.success());
    conn.close().await;
    assert_eq!(
        std::fs::read_to_string(&kh).expect("recorded"),
        host_key_line(&f, "h-01")
    );

    let strict = SshOptions {
        known_hosts: kh,
        ..options(&f)
    };
    let conn = connect(strict, &target(&f, "h-01"))
        .await
        .expect("strict now");
    conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashed_known_hosts_entries_are_understood() {
    let f = one();
    let kh = f.tmp().join("kh_hashed");
    std::fs::copy(f.known_hosts_path(), &kh).expect("copy");
    sh(&format!("ssh-keygen -q -H -f {} 2>/dev/null", kh.display()));
    let hashed = std::fs::read_to_string(&kh).expect("read");
    assert!(hashed.starts_with("|1|"), "{hashed}");
    let opts = SshOptions {
        known_hosts: kh,
        ..options(&f)
    };
    let conn = connect(opts, &target(&f, "h-01"))
        .await
        .expect("hashed entry");
    conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_types_rsa_ecdsa_and_ssh_config() {
    let f = one();
    for kind in ["rsa", "ecdsa"] {
        let key = f.tmp().join(format!("id_{kind}"));
        keygen(&key, kind, "");
        authorize(&f, &key.with_extension("pub"));
        let t = ConnectTarget {
            identity_file: Some(key),
            ..target(&f, "h-01")
        };
        let conn = connect(options(&f), &t)
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert!(run(&conn, "true").await.status.success());
        conn.close().await;
    }

    // Everything from the ssh config: the inventory names only the alias.
    let config = f.tmp().join("ssh_config");
    std::fs::write(
        &config,
        format!(
            "Host sl-*\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n  ConnectTimeout 5\n  ServerAliveInterval 15\n  ForwardAgent no\n",
            f.port("h-01"),
            f.host("h-01").user,
            f.key_path().display()
        ),
    )
    .expect("config");
    let opts = SshOptions {
        ssh_config: Some(config),
        ..options(&f)
    };
    let conn = connect(opts, &ConnectTarget::new("sl-alias"))
        .await
        .expect("via ssh config");
    assert_eq!(
        text(&run(&conn, "id -un").await.stdout),
        format!("{}\n", f.host("h-01").user)
    );
    conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_key_with_passphrase_from_env_var() {
    let f = one();
    // The fleet's own key, encrypted.
    let key = f.tmp().join("id_enc");
    std::fs::copy(f.key_path(), &key).expect("copy key");
    sh(&format!(
        "chmod 600 {0} && ssh-keygen -q -p -P '' -N 's3cret pass' -f {0}",
        key.display()
    ));
    let t = ConnectTarget {
        identity_file: Some(key.clone()),
        ..target(&f, "h-01")
    };
    std::env::set_var("FLEETUP_TEST_PASSPHRASE_OK", "s3cret pass");
    let opts = SshOptions {
        passphrase_env: Some("FLEETUP_TEST_PASSPHRASE_OK".into()),
        ..options(&f)
    };
    let conn = connect(opts, &t)
        .await
        .expect("decrypted with env passphrase");
    assert!(run(&conn, "true").await.status.success());
    conn.close().await;

    // The variable unset, no terminal: a clear error naming the key and the variable.
    let opts = SshOptions {
        passphrase_env: Some("FLEETUP_TEST_PASSPHRASE_UNSET".into()),
        ..options(&f)
    };
    let err = connect(opts, &t).await.expect_err("no passphrase");
    eprintln!("MESSAGE: {err}");
    assert!(matches!(err, TransportError::Key { .. }), "{err}");
    assert!(err.is_unreachable());
    let msg = err.to_string();
    assert!(
        msg.contains("encrypted") && msg.contains("$FLEETUP_TEST_PASSPHRASE_UNSET"),
        "{msg}"
    );
    assert!(msg.contains(&key.display().to_string()), "{msg}");

    std::env::set_var("FLEETUP_TEST_PASSPHRASE_BAD", "nope");
    let opts = SshOptions {
        passphrase_env: Some("FLEETUP_TEST_PASSPHRASE_BAD".into()),
        ..options(&f)
    };
    let err = connect(opts, &t).await.expect_err("bad passphrase");
    assert!(err.to_string().contains("does not open it"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_authentication() {
    let f = one();
    let agent = Agent::start(f.tmp());
    agent.add(&f.key_path());
    let opts = SshOptions {
        agent_socket: Some(agent.socket.clone()),
        ..options(&f)
    };
    let t = ConnectTarget {
        identity_file: None,
        ..target(&f, "h-01")
    };
    let conn = connect(opts, &t).await.expect("agent auth");
    assert!(run(&conn, "true").await.status.success());
    conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_key_is_tried_last() {
    let f = one();
    let opts = SshOptions {
        default_identity_files: vec![f.tmp().join("id_missing"), f.key_path()],
        ..options(&f)
    };
    let t = ConnectTarget {
        identity_file: None,
        ..target(&f, "h-01")
    };
    let conn = connect(opts, &t).await.expect("default key");
    conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_readable_by_others_is_refused_as_openssh_refuses_it() {
    use std::os::unix::fs::PermissionsExt;
    let f = one();
    // The fleet's own key, which the hosts accept, made readable by everyone.
    let loose = f.tmp().join("id_loose");
    std::fs::copy(f.key_path(), &loose).expect("copy key");
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let named = ConnectTarget {
        identity_file: Some(loose.clone()),
        ..target(&f, "h-01")
    };
    let err = connect(options(&f), &named).await.expect_err("loose key");
    eprintln!("MESSAGE: {err}");
    assert!(matches!(err, TransportError::Key { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("permissions 0644"), "{msg}");
    assert!(
        msg.contains(&format!("chmod 600 {}", loose.display())),
        "{msg}"
    );
    // As a default key it is skipped, and said so.
    let opts = SshOptions {
        default_identity_files: vec![loose.clone()],
        ..options(&f)
    };
    let by_default = ConnectTarget {
        identity_file: None,
        ..target(&f, "h-01")
    };
    let err = connect(opts.clone(), &by_default)
        .await
        .expect_err("loose default key");
    assert!(matches!(err, TransportError::AuthFailed { .. }), "{err}");
    assert!(err.to_string().contains("too open"), "{err}");
    assert!(f.commands("h-01").is_empty());
    // The remedy the message gives works.
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let conn = connect(opts, &by_default)
        .await
        .expect("key after chmod 600");
    conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentication_is_unreachable_and_lists_what_was_tried() {
    let f = one();
    let stranger = f.tmp().join("id_stranger");
    keygen(&stranger, "ed25519", "");
    let agent = Agent::start(f.tmp());
    let opts = SshOptions {
        agent_socket: Some(agent.socket.clone()),
        ..options(&f)
    };
    let t = ConnectTarget {
        identity_file: Some(stranger.clone()),
        ..target(&f, "h-01")
    };
    let err = connect(opts, &t).await.expect_err("auth fails");
    eprintln!("MESSAGE: {err}");
    assert!(matches!(err, TransportError::AuthFailed { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::Unreachable);
    let msg = err.to_string();
    assert!(
        msg.starts_with("h-01: authentication as \"fleetup-test\" failed"),
        "{msg}"
    );
    assert!(msg.contains(&stranger.display().to_string()), "{msg}");
    assert!(msg.contains("ssh-agent at"), "{msg}");
    assert!(f.commands("h-01").is_empty());

    let t = ConnectTarget {
        identity_file: Some(f.tmp().join("no_such_key")),
        ..target(&f, "h-01")
    };
    let err = connect(options(&f), &t).await.expect_err("no key file");
    assert!(matches!(err, TransportError::Key { .. }), "{err}");
    assert!(err.to_string().contains("no_such_key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_blackholed_silent_and_unknown_addresses_are_unreachable_in_time() {
    let f = Fleet::start(
        Spec::new()
            .group("production", "s", 2, V)
            .with("s-02", HostSpec::own_sshd),
    );
    // A host whose sshd is gone: refused at once.
    f.stop_host("s-02");
    let t0 = Instant::now();
    let err = connect(options(&f), &target(&f, "s-02"))
        .await
        .expect_err("refused");
    eprintln!("MESSAGE: {err}");
    assert!(matches!(err, TransportError::Refused { .. }), "{err}");
    assert!(err.is_unreachable());
    assert!(t0.elapsed() < Duration::from_secs(1));

    // An address that never answers: the connect timeout, not the kernel's minutes.
    let hole = Blackhole::create();
    let t = ConnectTarget {
        address: Some(hole.address.into()),
        port: Some(22),
        connect_timeout: Some(Duration::from_secs(2)),
        ..target(&f, "s-01")
    };
    let t0 = Instant::now();
    let err = connect(options(&f), &t).await.expect_err("timeout");
    let took = t0.elapsed();
    eprintln!("MESSAGE: {err}");
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

    // A port that accepts TCP but never speaks SSH: the handshake is in the timeout too.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let t = ConnectTarget {
        port: Some(silent.local_addr().expect("addr").port()),
        connect_timeout: Some(Duration::from_secs(1)),
        ..target(&f, "s-01")
    };
    let t0 = Instant::now();
    let err = connect(options(&f), &t).await.expect_err("timeout");
    assert!(
        matches!(err, TransportError::ConnectTimeout { .. }),
        "{err}"
    );
    assert!(t0.elapsed() < Duration::from_millis(2000));

    let t = ConnectTarget {
        address: Some("no-such-host.invalid".into()),
        ..target(&f, "s-01")
    };
    let err = connect(options(&f), &t).await.expect_err("dns");
    assert!(matches!(err, TransportError::Dns { .. }), "{err}");
    assert!(f.commands("s-01").is_empty());
}

/// Runs a command that outlives its timeout; nothing of it may be left on the host.
async fn timeout_leaves_nothing(
    f: &Fleet,
    conn: &HostConnection,
    host: &str,
    tag: u32,
    ignore_term: bool,
) {
    let trap = if ignore_term { "trap '' TERM; " } else { "" };
    let cmd = format!("{trap}echo started; sleep {tag}1 & sleep {tag}2; echo never");
    let t0 = Instant::now();
    let mut stdout = Vec::new();
    // Root's login shell here runs `pyenv rehash` from .bashrc, which leaves a stale lock
    // (and every later root shell waits 60 s on it) if killed: time out only well after
    // the shell has started, even on a loaded machine.
    let timeout = if f.host(host).root { 3 } else { 1 };
    let req = ExecRequest::new(&cmd).timeout(Duration::from_secs(timeout));
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
    let left = host_processes(f, host);
    assert!(left.is_empty(), "left running after the timeout: {left:?}");
    assert!(pgrep(&format!("sleep {tag}[12]")).is_empty());
    eprintln!("MEASURE: timeout (ignore TERM: {ignore_term}) returned after {took:?}");
    // The connection is still usable.
    assert!(run(conn, "true").await.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_command_is_terminated_on_the_host_non_root() {
    let f = one();
    let conn = connect(options(&f), &target(&f, "h-01"))
        .await
        .expect("connect");
    timeout_leaves_nothing(&f, &conn, "h-01", 4301, false).await;
    timeout_leaves_nothing(&f, &conn, "h-01", 4302, true).await;

    // Stopped at once, possibly while the login shell is still starting, before the
    // command's process group id is known (the exec token finds the shell).
    for ms in [1, 5, 30, 100] {
        let req = ExecRequest::new("sleep 43131").timeout(Duration::from_millis(ms));
        let err = run_req(&conn, &req).await.expect_err("timeout");
        assert!(
            matches!(err, TransportError::CommandTimedOut { .. }),
            "{err}"
        );
        let left = host_processes(&f, "h-01");
        assert!(
            left.is_empty(),
            "left running after a {ms} ms timeout: {left:?}"
        );
    }

    // A docker command hanging on the host (a shim-level fault) is killed with the rest.
    let mut r = rule("alembic", "hang");
    r["scope"] = serde_json::json!("shim");
    f.fault("h-01", r);
    let req = ExecRequest::new(
        "docker run --rm --network sl-network simplelogin/app-ci:v4.65.0 alembic upgrade head",
    )
    .timeout(Duration::from_secs(1));
    let err = run_req(&conn, &req).await.expect_err("timeout");
    assert!(
        matches!(err, TransportError::CommandTimedOut { .. }),
        "{err}"
    );
    let left = host_processes(&f, "h-01");
    assert!(left.is_empty(), "{left:?}");
    let ends: Vec<_> = f
        .commands("h-01")
        .into_iter()
        .filter(|c| c.ev == "end" && c.cmd.contains("alembic"))
        .collect();
    assert_eq!(ends.len(), 2, "{ends:?}");
    assert!(
        ends.iter().all(|e| e.signal.as_deref() == Some("TERM")),
        "{ends:?}"
    );
    conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_command_is_terminated_on_the_host_root() {
    let f = Fleet::start(
        Spec::new()
            .group("production", "r", 1, V)
            .with("r-01", HostSpec::root),
    );
    let conn = connect(options(&f), &target(&f, "r-01"))
        .await
        .expect("connect");
    assert_eq!(text(&run(&conn, "id -u").await.stdout), "0\n");
    timeout_leaves_nothing(&f, &conn, "r-01", 4311, false).await;
    timeout_leaves_nothing(&f, &conn, "r-01", 4312, true).await;

    // (Not stopped within root's shell start-up here: this machine's root .bashrc runs
    // `pyenv rehash`, which leaves a stale lock when killed; the non-root test covers it.)

    // The session wrapper itself hangs (before any shell): found by the exec token.
    let mut r = rule("sleep 43141", "hang");
    r["scope"] = serde_json::json!("session");
    f.fault("r-01", r);
    let req = ExecRequest::new("sleep 43141").timeout(Duration::from_secs(1));
    let err = run_req(&conn, &req).await.expect_err("timeout");
    assert!(
        matches!(err, TransportError::CommandTimedOut { .. }),
        "{err}"
    );
    let left = host_processes(&f, "r-01");
    assert!(left.is_empty(), "hung session wrapper left: {left:?}");
    conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn become_runs_through_sudo_and_is_terminated_as_root() {
    if !Path::new("/usr/bin/sudo").exists() {
        eprintln!("SKIPPED: sudo is not installed (apt-get install sudo): become untested");
        return;
    }
    let f = one();
    let user = f.host("h-01").user.clone();
    // become: root without a password, any other user with one.
    struct Removed(String);
    impl Drop for Removed {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let rule_path = Removed(format!("/etc/sudoers.d/fleetup-test-{user}"));
    std::fs::write(&rule_path.0, format!("{user} ALL=(root) NOPASSWD: ALL\n")).expect("sudoers");
    sh(&format!("chmod 440 {}", rule_path.0));

    let conn = connect(options(&f), &target(&f, "h-01"))
        .await
        .expect("connect");
    let req = ExecRequest::new("id -u; echo \"$0\" >&2").become_user(None);
    let o = run_req(&conn, &req).await.expect("become root");
    assert_eq!(text(&o.stdout), "0\n");
    assert_eq!(text(&o.stderr), "/bin/sh\n");

    let req = ExecRequest::new("id -u").become_user(Some("nobody".into()));
    let err = run_req(&conn, &req).await.expect_err("password required");
    eprintln!("MESSAGE: {err}");
    assert!(
        matches!(err, TransportError::BecomePasswordRequired { .. }),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Failed);
    assert!(
        err.to_string().contains(&format!(
            "sudo asked {user} for a password to run `sudo -n -u nobody -- /bin/sh -c 'id -u'`"
        )),
        "{err}"
    );

    // Root processes started through sudo by a non-root login are killed too.
    let req = ExecRequest::new("trap '' TERM; sleep 43311 & sleep 43312")
        .become_user(None)
        .timeout(Duration::from_secs(1));
    let err = run_req(&conn, &req).await.expect_err("timeout");
    assert!(
        matches!(err, TransportError::CommandTimedOut { .. }),
        "{err}"
    );
    let left = pgrep_left("sleep 4331[12]");
    assert!(left.is_empty(), "left running: {left:?}");
    conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_command_is_terminated() {
    let f = one();
    let conn = connect(options(&f), &target(&f, "h-01"))
        .await
        .expect("connect");
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        t.cancel();
    });
    let req = ExecRequest::new("sleep 43211").cancel(token.clone());
    let err = run_req(&conn, &req).await.expect_err("cancelled");
    assert!(matches!(err, TransportError::Cancelled { .. }), "{err}");
    let left = host_processes(&f, "h-01");
    assert!(left.is_empty(), "{left:?}");
    // Already cancelled: not even started.
    let before = sessions(&f, "h-01").len();
    let req = ExecRequest::new("echo never").cancel(token);
    let err = run_req(&conn, &req).await.expect_err("cancelled");
    assert!(matches!(err, TransportError::Cancelled { .. }), "{err}");
    assert_eq!(sessions(&f, "h-01").len(), before);
    conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_dropped_mid_command_is_connection_lost() {
    let f = one();
    let mut r = rule("docker compose up", "drop");
    r["scope"] = serde_json::json!("shim");
    f.fault("h-01", r);
    let conn = connect(options(&f), &target(&f, "h-01"))
        .await
        .expect("connect");
    let app = f.app_path("h-01");
    let cmd = format!(
        // The pause lets sshd send `before` first: what it has not sent when the network
        // goes is lost with it (under load, `before` was).
        "cd '{}' && echo before && sleep 0.5 && docker compose up -d; echo after",
        app.display()
    );
    let mut out = Vec::new();
    let t0 = Instant::now();
    let err = conn
        .exec(&ExecRequest::new(&cmd), &mut |_, d: &[u8]| {
            out.extend_from_slice(d)
        })
        .await
        .expect_err("lost");
    eprintln!("MESSAGE: {err}");
    assert!(
        matches!(err, TransportError::ConnectionLost { .. }),
        "{err}"
    );
    assert!(err.is_unreachable());
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(text(&out), "before\n");
    assert!(f
        .commands("h-01")
        .iter()
        .any(|c| c.ev == "end" && c.dropped));
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
    let f = one();
    let opts = SshOptions {
        keepalive_interval: Some(Duration::from_secs(1)),
        keepalive_max: 2,
        ..options(&f)
    };
    let conn = connect(opts, &target(&f, "h-01")).await.expect("connect");
    // The command freezes the sshd process serving its connection (SIGSTOP; above the
    // fleet's session wrapper): the host stops answering without closing the connection,
    // as a dead host or a cut network would.
    let cmd = "P=$(awk '{print $4}' /proc/$PPID/stat); echo $P; sleep 0.3; kill -STOP $P; exec sleep 43231";
    let mut out = Vec::new();
    let t0 = Instant::now();
    let err = conn
        .exec(&ExecRequest::new(cmd), &mut |s, d: &[u8]| {
            if s == OutputStream::Stdout {
                out.extend_from_slice(d)
            }
        })
        .await
        .expect_err("lost");
    let took = t0.elapsed();
    if let Ok(pid) = text(&out).trim().parse::<i32>() {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    eprintln!("MESSAGE: {err}");
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
    let f = Fleet::start(Spec::new().group("production", "p", 2, V));
    let bastion = f.host("p-01").clone();
    let jump = format!("{}@127.0.0.1:{}", bastion.user, bastion.port);
    let t = ConnectTarget {
        proxy_jump: Some(jump.clone()),
        ..target(&f, "p-02")
    };
    let conn = connect(options(&f), &t).await.expect("through bastion");
    let o = run(&conn, "echo via $FLEET_HOST").await;
    assert_eq!(text(&o.stdout), "via p-02\n");
    assert_eq!(sessions(&f, "p-02").len(), 1);
    // The bastion only forwarded: it ran nothing.
    assert!(sessions(&f, "p-01").is_empty());
    conn.close().await;

    // Two hops (the bastion twice).
    let t2 = ConnectTarget {
        proxy_jump: Some(format!("{jump},{jump}")),
        ..t.clone()
    };
    let conn = connect(options(&f), &t2).await.expect("two hops");
    assert!(run(&conn, "true").await.status.success());
    conn.close().await;

    // The bastion's own key is verified: an unknown bastion is refused, and named.
    let kh = f.tmp().join("kh_without_bastion");
    std::fs::write(&kh, host_key_line(&f, "p-02")).expect("kh");
    let opts = SshOptions {
        known_hosts: kh,
        ..options(&f)
    };
    let before = sessions(&f, "p-02").len();
    let err = connect(opts, &t).await.expect_err("bastion refused");
    eprintln!("MESSAGE: {err}");
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
    assert_eq!(sessions(&f, "p-02").len(), before);
}

/// CPU time (user + system) this test process has used.
fn cpu_time() -> Duration {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; zeroed is a valid rusage.
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr());
        ru.assume_init()
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_hosts_at_once() {
    let t0 = Instant::now();
    let f = Fleet::start(Spec::new().group("production", "w", 200, V));
    eprintln!("MEASURE: fleet of 200 started in {:?}", t0.elapsed());
    let transport = Arc::new(Transport::new(options(&f)).expect("transport"));

    // One connection alone, and the cost of a command on an open connection.
    let t0 = Instant::now();
    let conn = transport
        .connect(&target(&f, "w-01"))
        .await
        .expect("connect");
    let connect_one = t0.elapsed();
    run(&conn, "true").await;
    let n = 50;
    let (t0, cpu0) = (Instant::now(), cpu_time());
    for _ in 0..n {
        run(&conn, "true").await;
    }
    let per_exec = t0.elapsed() / n;
    // What the controller itself spends per command (the rest is sshd and the host).
    let cpu_per_exec = cpu_time().saturating_sub(cpu0) / n;
    conn.close().await;

    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for h in f.hosts() {
        let transport = transport.clone();
        // 200 key exchanges at once on a loaded CI machine: what this test proves is that
        // they all succeed, not how fast (the figures are printed), so no 10 s limit.
        let t = ConnectTarget {
            connect_timeout: Some(Duration::from_secs(60)),
            ..target(&f, &h.name)
        };
        tasks.push(tokio::spawn(async move {
            let conn = transport.connect(&t).await?;
            let o = run_req(&conn, &ExecRequest::new("echo $FLEET_HOST")).await?;
            Ok::<_, TransportError>((conn, t.name, o))
        }));
    }
    let mut conns = Vec::new();
    let mut failures = Vec::new();
    for t in tasks {
        match t.await.expect("task") {
            Ok((c, name, o)) => {
                assert_eq!(text(&o.stdout), format!("{name}\n"));
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
    assert_eq!(conns.len(), 200);
    let t0 = Instant::now();
    futures::future::join_all(conns.iter().map(|c| c.close())).await;
    let close_all = t0.elapsed();
    assert_eq!(sessions(&f, "w-200").len(), 1);
    eprintln!(
        "MEASURE: connect+auth one host {connect_one:?}; exec `true` on an open connection {per_exec:?} \
         (controller CPU {cpu_per_exec:?}); 200 hosts connected + one command each {all:?}; \
         closed in {close_all:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_transport_runs_through_sh() {
    let transport = Transport::new(SshOptions {
        ssh_config: None,
        ..SshOptions::default()
    })
    .expect("transport");
    let t = ConnectTarget {
        kind: ConnectionKind::Local,
        ..ConnectTarget::new("controller")
    };
    let conn = transport.connect(&t).await.expect("local");
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
    let left = pgrep_left("sleep 4324[12]");
    assert!(left.is_empty(), "{left:?}");
}
