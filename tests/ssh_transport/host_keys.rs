//! Host keys. Checking is never off: a host whose key is unknown, changed, or recorded
//! under another type is refused before anything runs on it, as OpenSSH would, because
//! the upgrade runs as root and must never run on a host that may not be the one meant;
//! accept-new only ever adds a key, never replaces one.

use super::*;

/// Connecting to h-01 with `kh` as known_hosts under `policy`: refused, and why.
async fn refused(f: &Fleet, kh: &Path, policy: HostKeyChecking) -> TransportError {
    let opts = crate::ssh_trust_server::options(kh, policy);
    let err = connect(opts, &target(f, "h-01"))
        .await
        .expect_err("refused");
    eprintln!("MESSAGE: {err}");
    err
}

/// Connecting to h-01 with `kh` as known_hosts under `policy`: accepted (`why`, if not).
async fn accepted(f: &Fleet, kh: &Path, policy: HostKeyChecking, why: &str) -> HostConnection {
    let opts = crate::ssh_trust_server::options(kh, policy);
    connect(opts, &target(f, "h-01")).await.expect(why)
}

/// A new key of `kind` that is not h-01's: its type and base64, as known_hosts records them.
fn another_key(f: &Fleet, name: &str, kind: &str) -> String {
    let path = f.tmp().join(name);
    keygen(&path, kind, "");
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("pub");
    public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_key_is_refused_and_nothing_runs() {
    let f = one();
    let kh = f.tmp().join("empty_known_hosts");
    std::fs::write(&kh, "").expect("empty known_hosts");
    let err = refused(&f, &kh, HostKeyChecking::Strict).await;
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
    let other_key = another_key(&f, "other_host_key", "ed25519");
    let kh = f.tmp().join("changed_known_hosts");
    std::fs::write(
        &kh,
        format!("# the fleet\n[127.0.0.1]:{} {other_key}\n", f.port("h-01")),
    )
    .expect("write");
    for policy in [HostKeyChecking::Strict, HostKeyChecking::AcceptNew] {
        let err = refused(&f, &kh, policy).await;
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
    let other_key = another_key(&f, "ecdsa_host_key", "ecdsa");
    let kh = f.tmp().join("ecdsa_known_hosts");
    let recorded = format!("[127.0.0.1]:{} {other_key}\n", f.port("h-01"));
    std::fs::write(&kh, &recorded).expect("write");
    for policy in [HostKeyChecking::Strict, HostKeyChecking::AcceptNew] {
        let err = refused(&f, &kh, policy).await;
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
    let conn = accepted(&f, &kh, HostKeyChecking::AcceptNew, "accept-new").await;
    assert!(run(&conn, "true").await.status.success());
    conn.close().await;
    assert_eq!(
        std::fs::read_to_string(&kh).expect("recorded"),
        host_key_line(&f, "h-01")
    );

    let conn = accepted(&f, &kh, HostKeyChecking::Strict, "strict now").await;
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
    let conn = accepted(&f, &kh, HostKeyChecking::Strict, "hashed entry").await;
    conn.close().await;
}
