//! Authentication. The keys operators already use (RSA, ECDSA, encrypted ones, an agent,
//! default keys, their ssh config) work without change, a key OpenSSH would refuse is
//! refused too, and a failed login says what was tried, because a host that will not let
//! us in must be diagnosable from the message alone.

use super::*;
use crate::ssh_trust_server::Agent;

fn authorize(f: &Fleet, pubkey: &Path) {
    let path = f.dir().join("authorized_keys");
    let mut all = std::fs::read_to_string(&path).expect("authorized_keys");
    all.push_str(&std::fs::read_to_string(pubkey).expect("pub"));
    std::fs::write(&path, all).expect("authorized_keys");
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
