//! Host certificates and `@cert-authority`, against OpenSSH's sshd (dropbear has no
//! certificates), with CAs and certificates made by `ssh-keygen` in the test. Each
//! known_hosts is first given to the OpenSSH client `ssh`: its verdict is the reference.

mod ssh_trust_server;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fleetup::connect::Transport;
use fleetup::ssh::{HostKeyChecking, SshOptions};
use fleetup::transport::{ConnectTarget, Connection, Connector, TransportError};
use ssh_trust_server::{client, echo_ok, keygen, options, public_key, run, Agent, Server, USER};

/// A CA key pair in `dir`.
fn ca(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    keygen(&path, "ed25519");
    path
}

/// An sshd whose Ed25519 host key is certified by `ca` for `principals`, valid `validity`
/// (`ssh-keygen -V`).
fn certified_server(ca: &Path, principals: &str, validity: &str) -> Server {
    certified_server_with(ca, principals, validity, "")
}

/// As [`certified_server`], with more sshd_config lines.
fn certified_server_with(ca: &Path, principals: &str, validity: &str, extra: &str) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let host_key = dir.path().join("ssh_host_ed25519_key");
    keygen(&host_key, "ed25519");
    run(Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(ca)
        .args(["-I", "host", "-h", "-n", principals, "-V", validity])
        .arg(host_key.with_extension("pub")));
    let cert = dir.path().join("ssh_host_ed25519_key-cert.pub");
    Server::openssh_in(dir, &format!("HostCertificate {}\n{extra}", cert.display()))
}

fn target(server: &Server, jump: Option<&Server>) -> ConnectTarget {
    ConnectTarget {
        address: Some("127.0.0.1".into()),
        port: Some(server.port),
        user: Some(USER.into()),
        identity_file: Some(client().key.clone()),
        proxy_jump: jump.map(|j| format!("{USER}@127.0.0.1:{}", j.port)),
        connect_timeout: Some(Duration::from_secs(10)),
        ..ConnectTarget::new("h1")
    }
}

async fn fleetup(
    known_hosts: &Path,
    policy: HostKeyChecking,
    target: &ConnectTarget,
) -> Result<(), TransportError> {
    echo_ok(options(known_hosts, policy), target).await
}

/// What ssh says, checked against what is expected of it, then fleetup's verdict.
async fn both(
    server: &Server,
    kh: &Path,
    accepts: bool,
    ssh_says: &str,
) -> Result<(), TransportError> {
    let (ran, stderr) = server.ssh_verdict(kh, &[]);
    assert_eq!(ran, accepts, "the reference: {stderr}");
    assert!(stderr.contains(ssh_says), "{ssh_says:?} not in {stderr}");
    fleetup(kh, HostKeyChecking::Strict, &target(server, None)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_certificates_are_checked_as_openssh_checks_them() {
    let keys = tempfile::tempdir().expect("tempdir");
    let ca = ca(keys.path(), "ca");
    let ca_pub = public_key(&ca.with_extension("pub"));
    let other_ca = public_key(&self::ca(keys.path(), "other_ca").with_extension("pub"));
    let trusted = format!("@cert-authority * {ca_pub}\n");

    valid_for_the_name_is_accepted(&ca, &trusted).await;
    wrong_principal_or_expired_is_refused_unless_the_plain_key_is_recorded(&ca, &trusted).await;

    let s = certified_server(&ca, "127.0.0.1", "-5m:+1h");
    revoked_or_another_ca_is_refused(&s, &trusted, &ca_pub, &other_ca).await;
    ca_in_the_global_known_hosts_file_is_trusted(&s, &trusted).await;
    // A CA for other names does not vouch for this one.
    let kh = s.known_hosts(
        "kh_pattern",
        &format!("@cert-authority *.example.com,!127.* {ca_pub}\n"),
    );
    let err = both(&s, &kh, false, "Host key verification failed").await;
    assert!(err.is_err(), "{err:?}");
}

/// A certificate valid for the name is accepted with nothing else recorded.
async fn valid_for_the_name_is_accepted(ca: &Path, trusted: &str) {
    for principals in ["127.0.0.1", "db1,127.0.0.1"] {
        let s = certified_server(ca, principals, "-5m:+1h");
        let kh = s.known_hosts("kh", trusted);
        both(&s, &kh, true, "").await.expect(principals);
    }
}

/// Not a principal for this host (principals are names, not patterns), or expired: refused,
/// saying why.
async fn wrong_principal_or_expired_is_refused_unless_the_plain_key_is_recorded(
    ca: &Path,
    trusted: &str,
) {
    for (principals, validity, ssh_says, ours) in [
        (
            "127.0.0.*",
            "-5m:+1h",
            "name is not a listed principal",
            "not among its principals",
        ),
        (
            "web1.example.com",
            "-5m:+1h",
            "name is not a listed principal",
            "not among its principals",
        ),
        (
            "127.0.0.1",
            "20200101:20200102",
            "Certificate invalid: expired",
            "it expired at 2020-01-02",
        ),
    ] {
        let s = certified_server(ca, principals, validity);
        let kh = s.known_hosts("kh", trusted);
        match both(&s, &kh, false, ssh_says).await {
            Err(TransportError::HostCertificateInvalid {
                line: 1, reason, ..
            }) => {
                assert!(reason.contains(ours), "{reason}")
            }
            other => panic!("{principals} {validity}: {other:?}"),
        }
        // ...unless the plain key is recorded too: OpenSSH then falls back to it.
        let plain = format!("{trusted}{} {}\n", s.known_name(), s.host_key());
        let kh = s.known_hosts("kh_plain", &plain);
        both(&s, &kh, true, "").await.expect("plain key fallback");
    }
}

/// A revoked CA, or a CA other than the host's: refused.
async fn revoked_or_another_ca_is_refused(s: &Server, trusted: &str, ca_pub: &str, other_ca: &str) {
    // A revoked CA.
    let kh = s.known_hosts("kh_revoked", &format!("{trusted}@revoked * {ca_pub}\n"));
    let err = both(s, &kh, false, "REVOKED HOST KEY DETECTED").await;
    assert!(
        matches!(err, Err(TransportError::HostKeyRevoked { line: 2, .. })),
        "{err:?}"
    );
    // Another CA: the host is not vouched for, and the message says it is a certificate.
    let kh = s.known_hosts("kh_other", &format!("@cert-authority * {other_ca}\n"));
    match both(s, &kh, false, "Host key verification failed").await {
        Err(e @ TransportError::HostCertificateUntrusted { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("@cert-authority") && !msg.contains("ssh-keyscan"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
}

/// The CA in a global known_hosts file (GlobalKnownHostsFile), the user's file empty.
async fn ca_in_the_global_known_hosts_file_is_trusted(s: &Server, trusted: &str) {
    let empty = s.known_hosts("kh_empty", "");
    let global = s.known_hosts("kh_global", trusted);
    let global_option = format!("GlobalKnownHostsFile={}", global.display());
    let (ran, stderr) = s.ssh_verdict(&empty, &["-o", &global_option]);
    assert!(ran, "the reference: {stderr}");
    let with_global = fleetup::ssh::SshOptions {
        global_known_hosts: vec![global],
        ..options(&empty, HostKeyChecking::Strict)
    };
    echo_ok(with_global, &target(s, None))
        .await
        .expect("CA in the global file");
}

/// Host and user certificates on every hop: each host is vouched for by the host CA, and
/// the login on each is by a user certificate only (the key itself is authorized nowhere).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_and_user_certificates_through_proxy_jump() {
    let keys = tempfile::tempdir().expect("tempdir");
    let ca = ca(keys.path(), "ca");
    let user_ca = self::ca(keys.path(), "user_ca");
    let trust_users = format!(
        "TrustedUserCAKeys {}",
        user_ca.with_extension("pub").display()
    );
    let user_key = certified_user_key(keys.path(), "id_cert_only", &user_ca, USER, "-5m:+1h");
    let bastion = certified_server_with(&ca, "127.0.0.1", "-5m:+1h", &trust_users);
    let host = certified_server_with(&ca, "127.0.0.1", "-5m:+1h", &trust_users);
    let target = |host: &Server, jump: &Server| ConnectTarget {
        identity_file: Some(user_key.clone()),
        ..self::target(host, Some(jump))
    };
    let kh = host.known_hosts(
        "kh",
        &format!(
            "@cert-authority 127.0.0.1,[127.0.0.1]:* {}\n",
            public_key(&ca.with_extension("pub"))
        ),
    );
    let proxy = bastion.proxy_command(&kh);
    let (ran, stderr) = host.ssh_verdict(&kh, &["-o", &proxy]);
    assert!(ran, "the reference: {stderr}");
    fleetup(&kh, HostKeyChecking::Strict, &target(&host, &bastion))
        .await
        .expect("through the bastion");
    // The bastion's certificate expires: refused at the first hop.
    let expired = certified_server(&ca, "127.0.0.1", "20200101:20200102");
    let (ran, _) = host.ssh_verdict(&kh, &["-o", &expired.proxy_command(&kh)]);
    assert!(!ran);
    match fleetup(&kh, HostKeyChecking::Strict, &target(&host, &expired)).await {
        Err(TransportError::ProxyJump { source, .. }) => assert!(
            matches!(*source, TransportError::HostCertificateInvalid { .. }),
            "{source}"
        ),
        other => panic!("{other:?}"),
    }
}

/// A key the server does not authorize, with a certificate beside it signed by `ca` for
/// `principals`, valid `validity`.
fn certified_user_key(
    dir: &Path,
    name: &str,
    ca: &Path,
    principals: &str,
    validity: &str,
) -> PathBuf {
    let key = dir.join(name);
    keygen(&key, "ed25519");
    run(Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(ca)
        .args(["-I", "user", "-n", principals, "-V", validity])
        .arg(key.with_extension("pub")));
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_certificates_beside_the_key_and_in_the_agent() {
    let host = UserCaHost::start();
    let good = host.certificate_beside_the_key_is_used().await;
    host.expired_or_other_logins_are_refused_saying_why().await;
    host.certificate_file_of_the_ssh_config_is_used().await;
    host.agent_certificate_is_used(&good).await;
}

/// An OpenSSH server that trusts a user CA, and a known_hosts with its plain host key;
/// the user keys certified by the CA go beside it in `keys`.
struct UserCaHost {
    server: Server,
    kh: PathBuf,
    ca: PathBuf,
    keys: tempfile::TempDir,
}

impl UserCaHost {
    fn start() -> Self {
        let keys = tempfile::tempdir().expect("tempdir");
        let ca = ca(keys.path(), "user_ca");
        let server = Server::openssh(&format!(
            "TrustedUserCAKeys {}",
            ca.with_extension("pub").display()
        ));
        let kh = server.known_hosts(
            "kh",
            &format!("{} {}\n", server.known_name(), server.host_key()),
        );
        UserCaHost {
            server,
            kh,
            ca,
            keys,
        }
    }

    fn with_key(&self, key: &Path) -> ConnectTarget {
        ConnectTarget {
            identity_file: Some(key.to_path_buf()),
            ..target(&self.server, None)
        }
    }

    /// `<identity>-cert.pub` beside the key: ssh uses it, and so does fleetup. Returns the
    /// key.
    async fn certificate_beside_the_key_is_used(&self) -> PathBuf {
        let (server, kh) = (&self.server, &self.kh);
        let good = certified_user_key(self.keys.path(), "id_good", &self.ca, USER, "-5m:+1h");
        let out = server.ssh_with(kh, Some(&good), &[], &["echo ok"]);
        assert!(out.status.success(), "the reference: {out:?}");
        fleetup(kh, HostKeyChecking::Strict, &self.with_key(&good))
            .await
            .expect("certificate beside the key");
        good
    }

    /// Expired, or for other logins: refused by both, and fleetup says why.
    async fn expired_or_other_logins_are_refused_saying_why(&self) {
        let (server, kh) = (&self.server, &self.kh);
        for (name, principals, validity, why) in [
            (
                "id_expired",
                USER,
                "20200101:20200102",
                "it expired at 2020-01-02",
            ),
            (
                "id_other",
                "deploy,admin",
                "-5m:+1h",
                "\"fleetup-trust\" is not among its principals (deploy, admin)",
            ),
        ] {
            let key = certified_user_key(self.keys.path(), name, &self.ca, principals, validity);
            let out = server.ssh_with(kh, Some(&key), &[], &["echo ok"]);
            assert!(!out.status.success(), "the reference accepted {name}");
            match fleetup(kh, HostKeyChecking::Strict, &self.with_key(&key)).await {
                Err(e @ TransportError::AuthFailed { .. }) => {
                    let msg = e.to_string();
                    let cert = format!("certificate {}-cert.pub (", key.display());
                    assert!(msg.contains(&cert) && msg.contains(why), "{msg}");
                }
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    /// A `CertificateFile` of the ssh config, away from the key.
    async fn certificate_file_of_the_ssh_config_is_used(&self) {
        let (server, kh, keys) = (&self.server, &self.kh, self.keys.path());
        let split = certified_user_key(keys, "id_split", &self.ca, USER, "-5m:+1h");
        let moved = keys.join("elsewhere-cert.pub");
        std::fs::rename(keys.join("id_split-cert.pub"), &moved).expect("move");
        let cert_file = format!("CertificateFile={}", moved.display());
        let out = server.ssh_with(kh, Some(&split), &["-o", &cert_file], &["echo ok"]);
        assert!(out.status.success(), "the reference: {out:?}");
        let config = keys.join("ssh_config");
        std::fs::write(
            &config,
            format!("Host *\n  CertificateFile {}\n", moved.display()),
        )
        .expect("config");
        let conn = Transport::new(SshOptions {
            ssh_config: Some(config),
            ..options(kh, HostKeyChecking::Strict)
        })
        .expect("transport")
        .connect(&self.with_key(&split))
        .await
        .expect("the CertificateFile");
        conn.close().await;
    }

    /// The agent holds the key and its certificate (ssh-add loads both).
    async fn agent_certificate_is_used(&self, good: &Path) {
        let (server, kh) = (&self.server, &self.kh);
        let agent = Agent::start(self.keys.path());
        agent.add(good);
        let sock = format!("IdentityAgent={}", agent.socket.display());
        let out = server.ssh_with(
            kh,
            None,
            &["-o", &sock, "-o", "IdentitiesOnly=no"],
            &["echo ok"],
        );
        assert!(out.status.success(), "the reference: {out:?}");
        let conn = Transport::new(SshOptions {
            agent_socket: Some(agent.socket.clone()),
            ..options(kh, HostKeyChecking::Strict)
        })
        .expect("transport")
        .connect(&ConnectTarget {
            identity_file: None,
            ..target(server, None)
        })
        .await
        .expect("the agent's certificate");
        conn.close().await;
    }
}
