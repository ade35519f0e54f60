//! Reaching hosts. One host that refuses, never answers, speaks no SSH or has no address
//! is reported unreachable within its connect timeout, because it must not stall the rest
//! of the fleet; a bastion is verified like any host; two hundred hosts connect at once;
//! and the controller itself runs commands through the same interface.

use super::*;
use crate::fleet::Blackhole;
use fleetup::transport::ConnectionKind;

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
    assert_times_out_leaving_nothing(&conn, &req, "sleep 4324[12]").await;
}
