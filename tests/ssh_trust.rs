//! SSH trust as OpenSSH decides it, against real servers on loopback (OpenSSH's sshd and
//! dropbear) with keys made by `ssh-keygen`: every known_hosts file here is first given to
//! the OpenSSH client `ssh`, whose verdict is the reference fleetup must reach.
//!
//! Run as root (the servers, the login user).

mod ssh_trust_server;

use std::path::Path;
use std::time::Duration;

use fleetup::ssh::HostKeyChecking;
use fleetup::transport::{ConnectTarget, TransportError};
use ssh_trust_server::{client, echo_ok, hashed, options, Server, USER};

fn target(server: &Server) -> ConnectTarget {
    ConnectTarget {
        address: Some("127.0.0.1".into()),
        port: Some(server.port),
        user: Some(USER.into()),
        identity_file: Some(client().key.clone()),
        connect_timeout: Some(Duration::from_secs(10)),
        ..ConnectTarget::new("h1")
    }
}

/// fleetup's verdict: connected and ran `echo ok`, or the error.
async fn fleetup(
    server: &Server,
    known_hosts: &Path,
    policy: HostKeyChecking,
) -> Result<(), TransportError> {
    echo_ok(options(known_hosts, policy), &target(server)).await
}

/// Both clients accept the file.
async fn both_accept(server: &Server, known_hosts: &Path, what: &str) {
    let (ran, stderr) = server.ssh_verdict(known_hosts, &[]);
    assert!(ran, "{what}: ssh refused: {stderr}");
    if let Err(e) = fleetup(server, known_hosts, HostKeyChecking::Strict).await {
        panic!("{what}: ssh accepts, fleetup refuses: {e}");
    }
}

/// The known_hosts forms of `@revoked` operators write, each beside a line that records the
/// same key as valid: the revocation must win.
fn revoked_forms(server: &Server) -> Vec<(&'static str, String, usize)> {
    let key = server.host_key();
    let name = server.known_name();
    let plain = format!("{name} {key}\n");
    let hashed_name = hashed(server.dir.path(), &plain);
    vec![
        ("plain", format!("{plain}@revoked {name} {key}\n"), 2),
        ("hashed", format!("{plain}@revoked {hashed_name}"), 2),
        ("wildcard", format!("@revoked * {key}\n{plain}"), 1),
        (
            "pattern list",
            format!("# rotated out\n{plain}@revoked  other,[127.0.0.?]:* {key} old key\n"),
            3,
        ),
    ]
}

async fn revoked_is_refused_in_every_form(server: Server) {
    let plain = format!("{} {}\n", server.known_name(), server.host_key());
    let control = server.known_hosts("control", &plain);
    both_accept(&server, &control, "control").await;
    for (form, text, line) in revoked_forms(&server) {
        let kh = server.known_hosts(&form.replace(' ', "_"), &text);
        let (ran, stderr) = server.ssh_verdict(&kh, &[]);
        assert!(!ran, "{form}: ssh accepted a revoked key");
        assert!(
            stderr.contains("REVOKED HOST KEY DETECTED"),
            "{form}: {stderr}"
        );
        for policy in [
            HostKeyChecking::Strict,
            HostKeyChecking::AcceptNew,
            HostKeyChecking::Off,
        ] {
            let err = fleetup(&server, &kh, policy)
                .await
                .expect_err("a revoked key is refused");
            let msg = err.to_string();
            match &err {
                TransportError::HostKeyRevoked {
                    line: l,
                    known_hosts,
                    ..
                } => {
                    assert_eq!((*l, known_hosts.as_path()), (line, kh.as_path()), "{msg}");
                }
                other => panic!("{form} {policy:?}: {other}"),
            }
            assert!(msg.contains("REVOKED HOST KEY DETECTED"), "{msg}");
            assert!(msg.contains(&format!("line {line}")), "{msg}");
        }
        // Nothing was learned under accept-new.
        assert_eq!(std::fs::read_to_string(&kh).expect("read"), text, "{form}");
    }
}

/// The one form where fleetup is stricter than its reference: OpenSSH 9.2's `check_markers`
/// ends the marker at the first space of the whole line, so `@revoked<TAB>` followed by a
/// key with a space reads as an unknown marker, the line is skipped and the key accepted.
/// A revocation the operator wrote must not be lost to a tab: fleetup refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_after_a_tab_is_refused_where_openssh_skips_the_line() {
    let server = Server::openssh("");
    let (name, key) = (server.known_name(), server.host_key());
    let kh = server.known_hosts("tab", &format!("{name} {key}\n@revoked\t*\t{key}\n"));
    let (ran, stderr) = server.ssh_verdict(&kh, &[]);
    assert!(ran, "OpenSSH now refuses it too: {stderr}");
    let err = fleetup(&server, &kh, HostKeyChecking::Strict)
        .await
        .expect_err("refused");
    assert!(
        matches!(err, TransportError::HostKeyRevoked { line: 2, .. }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_host_key_is_refused_in_every_form_openssh() {
    revoked_is_refused_in_every_form(Server::openssh("")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_host_key_is_refused_in_every_form_dropbear() {
    revoked_is_refused_in_every_form(Server::dropbear()).await;
}

/// known_hosts forms of sshd(8)'s SSH_KNOWN_HOSTS FILE FORMAT, with whether they record the
/// server's key: any whitespace, patterns, negation, comma lists, hashed names, several
/// keys per host (after a rotation, the old one first).
fn known_hosts_forms(server: &Server) -> Vec<(&'static str, String, bool)> {
    let (name, key, port) = (server.known_name(), server.host_key(), server.port);
    let old = server.dir.path().join("old_host_key");
    ssh_trust_server::keygen(&old, "ed25519");
    let old = ssh_trust_server::public_key(&old.with_extension("pub"));
    let tabbed = key.replace(' ', "\t");
    vec![
        ("rotation", format!("{name} {old}\n{name} {key}\n"), true),
        ("tabs", format!("\t{name}\t\t{tabbed}\tcomment\n"), true),
        ("star", format!("[127.0.0.*]:{port} {key}\n"), true),
        ("question", format!("[127.0.0.?]:* {key}\n"), true),
        ("list", format!("web1,{name},10.0.0.1 {key}\n"), true),
        (
            "hashed",
            hashed(server.dir.path(), &format!("{name} {key}\n")),
            true,
        ),
        // OpenSSH looks a host on another port up again by its bare name.
        ("port-less", format!("127.0.0.1 {key}\n"), true),
        ("negated", format!("*,!{name},!127.0.0.1 {key}\n"), false),
        ("other port", format!("[127.0.0.1]:1 {key}\n"), false),
        ("changed", format!("{name} {old}\n"), false),
    ]
}

async fn known_hosts_forms_decide_as_openssh(server: Server) {
    for (form, text, records) in known_hosts_forms(&server) {
        let kh = server.known_hosts(&form.replace(' ', "_"), &text);
        let (ran, stderr) = server.ssh_verdict(&kh, &[]);
        assert_eq!(ran, records, "{form}: the reference: {stderr}");
        let verdict = fleetup(&server, &kh, HostKeyChecking::Strict).await;
        match (verdict, records) {
            (Ok(()), true) => {}
            (Err(TransportError::HostKeyUnknown { .. }), false) if form != "changed" => {}
            (Err(TransportError::HostKeyChanged { line: 1, .. }), false) if form == "changed" => {}
            (other, _) => panic!("{form}: ssh ran={ran}, fleetup: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_hosts_forms_decide_as_openssh_does_openssh() {
    known_hosts_forms_decide_as_openssh(Server::openssh("")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_hosts_forms_decide_as_openssh_does_dropbear() {
    known_hosts_forms_decide_as_openssh(Server::dropbear()).await;
}

/// `@revoked` in a global known_hosts file (OpenSSH's GlobalKnownHostsFile, where companies
/// keep them) wins over the user's file recording the key; the error names the global file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_in_the_global_known_hosts_file() {
    let server = Server::openssh("");
    let key = server.host_key();
    let user = server.known_hosts("user_kh", &format!("{} {key}\n", server.known_name()));
    let global = server.known_hosts("global_kh", &format!("# fleet-wide\n@revoked * {key}\n"));
    let global_option = format!("GlobalKnownHostsFile={}", global.display());
    let (ran, stderr) = server.ssh_verdict(&user, &["-o", &global_option]);
    assert!(
        !ran && stderr.contains("REVOKED HOST KEY DETECTED"),
        "{stderr}"
    );
    let options = fleetup::ssh::SshOptions {
        global_known_hosts: vec![global.clone()],
        ..options(&user, HostKeyChecking::Strict)
    };
    match echo_ok(options, &target(&server)).await {
        Err(TransportError::HostKeyRevoked {
            known_hosts, line, ..
        }) => assert_eq!((known_hosts, line), (global, 2)),
        other => panic!("{other:?}"),
    }
}
