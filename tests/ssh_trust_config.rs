//! ssh_config as OpenSSH evaluates it, against a real sshd: `Match` blocks (never leaking
//! into the `Host` block before them), `Match exec` with %-tokens, first value wins,
//! `IdentityAgent`, and an unsupported criterion reported with its file and line. `ssh -G`
//! (OpenSSH's own evaluation) and a login by `ssh` on the same file are the reference.

mod ssh_trust_server;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use fleetup::connect::Transport;
use fleetup::ssh::{HostKeyChecking, SshOptions};
use fleetup::transport::{ConnectTarget, Connection, Connector, ExecRequest, TransportError};
use ssh_trust_server::{client, options, Agent, Server, USER};

/// `ssh -G -F config host`: the options OpenSSH settles on, or its error.
fn ssh_g(config: &Path, host: &str) -> Result<String, String> {
    let out = Command::new("ssh")
        .args(["-G", "-F"])
        .arg(config)
        .arg(host)
        .stdin(Stdio::null())
        .output()
        .expect("ssh -G");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn option<'a>(g: &'a str, name: &str) -> Option<&'a str> {
    g.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
}

/// fleetup connects to `name` with only the ssh config to say where and as whom, and
/// returns the remote login's name.
async fn whoami(
    config: &Path,
    known_hosts: &Path,
    name: &str,
    identity: Option<&Path>,
) -> Result<String, TransportError> {
    let conn = Transport::new(SshOptions {
        ssh_config: Some(config.to_path_buf()),
        ..options(known_hosts, HostKeyChecking::Strict)
    })
    .expect("transport")
    .connect(&ConnectTarget {
        identity_file: identity.map(Path::to_path_buf),
        connect_timeout: Some(Duration::from_secs(10)),
        ..ConnectTarget::new(name)
    })
    .await?;
    let mut out = Vec::new();
    conn.exec(&ExecRequest::new("id -un"), &mut |_, d: &[u8]| {
        out.extend_from_slice(d)
    })
    .await?;
    conn.close().await;
    Ok(String::from_utf8_lossy(&out).trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_blocks_apply_as_openssh_applies_them() {
    let server = Server::openssh("");
    let kh = server.known_hosts(
        "kh",
        &format!("{} {}\n", server.known_name(), server.host_key()),
    );
    let port = server.port;
    // The case: `User nobody` under a Match for another host must not reach
    // trust-alias (a reader without Match puts it in the block before, where it replaced
    // the user); the user comes from a `Match exec` with %h, %p and %n, before `Host *`.
    let config = server.known_hosts(
        "ssh_config",
        &format!(
            "Host trust-alias\n  HostName 127.0.0.1\n  Port {port}\n\
             Match exec \"test %h:%p:%n = 127.0.0.1:{port}:trust-alias\"\n  User {USER}\n\
             Match host never-this-host\n  User nobody\n\
             Host *\n  User wrong-user\n  ConnectTimeout 5\n"
        ),
    );
    let g = ssh_g(&config, "trust-alias").expect("ssh -G");
    assert_eq!(option(&g, "user"), Some(USER), "{g}");
    assert_eq!(option(&g, "port"), Some(port.to_string().as_str()));
    let key = client().key.to_string_lossy().into_owned();
    let out = Command::new("ssh")
        .arg("-F")
        .arg(&config)
        .args(["-i", &key, "-o", "BatchMode=yes", "-o"])
        .arg(format!("UserKnownHostsFile={}", kh.display()))
        .args(["trust-alias", "id -un"])
        .stdin(Stdio::null())
        .output()
        .expect("ssh");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), USER, "{out:?}");
    let login = whoami(&config, &kh, "trust-alias", Some(&client().key)).await;
    assert_eq!(login.expect("fleetup"), USER);
    // Another name: `Host *` gives it the wrong user, for both.
    let g = ssh_g(&config, "other").expect("ssh -G");
    assert_eq!(option(&g, "user"), Some("wrong-user"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_agent_from_the_config() {
    let server = Server::openssh("");
    let kh = server.known_hosts(
        "kh",
        &format!("{} {}\n", server.known_name(), server.host_key()),
    );
    let agent = Agent::start(server.dir.path());
    agent.add(&client().key);
    let config = server.known_hosts(
        "ssh_config",
        &format!(
            "Host via-agent\n  HostName 127.0.0.1\n  Port {}\n  User {USER}\n  IdentityAgent {}\n\
             Host no-agent\n  HostName 127.0.0.1\n  Port {}\n  User {USER}\n  IdentityAgent none\n",
            server.port,
            agent.socket.display(),
            server.port
        ),
    );
    let g = ssh_g(&config, "via-agent").expect("ssh -G");
    assert_eq!(
        option(&g, "identityagent"),
        Some(agent.socket.to_string_lossy().as_ref())
    );
    assert_eq!(
        whoami(&config, &kh, "via-agent", None)
            .await
            .expect("agent"),
        USER
    );
    let err = whoami(&config, &kh, "no-agent", None).await.unwrap_err();
    assert!(matches!(err, TransportError::AuthFailed { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupported_match_criterion_is_an_error_naming_file_and_line() {
    let server = Server::openssh("");
    let kh = server.known_hosts("kh", "");
    let config = server.known_hosts(
        "ssh_config",
        "Host a\n  HostName 127.0.0.1\n\nMatch host a localnetwork 10.0.0.0/8\n  User x\n",
    );
    let err = ssh_g(&config, "a").expect_err("ssh refuses it");
    assert!(err.contains("line 4: Bad Match condition"), "{err}");
    match whoami(&config, &kh, "a", None).await {
        Err(TransportError::SshConfig {
            line: 4,
            file,
            detail,
            ..
        }) => {
            assert_eq!(file, config);
            assert!(detail.contains("localnetwork"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
}
