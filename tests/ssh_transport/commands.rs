//! Running commands. What the host's command returned (exit code or signal, every byte
//! of both streams, in order) is what the caller gets, because the upgrade decides on it;
//! and a command that ends early (timeout, cancellation, a lost connection or a host that
//! stops answering, even under sudo or ignoring TERM) leaves nothing running on the host,
//! because a fleet run that gave up on a host must not leave half a step going there.

use super::*;
use crate::fleet::{processes_of_host, rule};
use fleetup::transport::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_exit_codes_signals_streams_and_stdin() {
    let f = one();
    let conn = Arc::new(connect_h01(&f).await);
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
    let conn = connect_h01(&f).await;
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
    let conn = connect_h01(&f).await;
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

    let conn = connect_h01(&f).await;
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
    assert_times_out_leaving_nothing(&conn, &req, "sleep 4331[12]").await;
    conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_command_is_terminated() {
    let f = one();
    let conn = connect_h01(&f).await;
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
    let conn = connect_h01(&f).await;
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
