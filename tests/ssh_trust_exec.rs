//! `fleetup exec`'s command line, against real servers (sshd and dropbear): the words after
//! `--` are joined with spaces into one line for the login shell, as the OpenSSH client
//! joins `ssh host WORDS...`; the output of `ssh` on the same words is the reference.

mod ssh_trust_server;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use ssh_trust_server::{keygen, Server};

/// `fleetup exec -i INVENTORY all [--output FORMAT] -- WORDS...` with no ssh config and no
/// agent.
fn exec(inventory: &Path, known_hosts: &Path, format: &str, words: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fleetup"))
        .arg("exec")
        .arg("-i")
        .arg(inventory)
        .arg("all")
        .arg("--known-hosts")
        .arg(known_hosts)
        .args(["--ssh-config", "/dev/null", "--output", format, "--"])
        .args(words)
        .env_remove("SSH_AUTH_SOCK")
        .current_dir(inventory.parent().expect("dir"))
        .stdin(Stdio::null())
        .output()
        .expect("fleetup")
}

/// The host's stdout for `fleetup exec ... --output json -- WORDS...`, and the exit code.
fn fleetup_exec(server: &Server, known_hosts: &Path, words: &[&str]) -> (i32, String) {
    let out = exec(&server.inventory(), known_hosts, "json", words);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let host_out = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "step_output")
        .and_then(|v| v["stdout"].as_str().map(str::to_string))
        .unwrap_or_else(|| {
            panic!(
                "no step_output in:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    (out.status.code().unwrap_or(-1), host_out)
}

fn joins_words_as_ssh_does(server: &Server) {
    let kh = server.known_hosts(
        "known_hosts",
        &format!("{} {}\n", server.known_name(), server.host_key()),
    );
    let cases: &[&[&str]] = &[
        // The case: one argument holding a pipeline.
        &["printf 'sl-app\\nother\\nsl-db\\n' | grep sl"],
        // Several words, shell operators among them.
        &["echo", "a", "&&", "echo", "$((1+2))"],
        &["echo 'two  spaces'", ";", "echo", "x  y"],
    ];
    for words in cases {
        let reference = server.ssh(&kh, &[], words);
        assert!(reference.status.success(), "{words:?}: {reference:?}");
        let reference = String::from_utf8_lossy(&reference.stdout).into_owned();
        let (code, ours) = fleetup_exec(server, &kh, words);
        assert_eq!(code, 0, "{words:?}: {ours}");
        assert_eq!(ours, reference, "{words:?}");
    }
    assert_eq!(
        fleetup_exec(server, &kh, cases[0]).1,
        "sl-app\nsl-db\n",
        "the pipeline ran"
    );
}

#[test]
fn exec_joins_words_into_one_shell_line_as_ssh_does_openssh() {
    joins_words_as_ssh_does(&Server::openssh(""));
}

#[test]
fn exec_joins_words_into_one_shell_line_as_ssh_does_dropbear() {
    joins_words_as_ssh_does(&Server::dropbear());
}

/// Key paths are not secrets: an unusable key and a key the host refuses are named by their
/// path; what is secret (a become password) stays hidden.
#[test]
fn key_paths_are_shown_and_secrets_are_not() {
    let server = Server::openssh("");
    let kh = server.known_hosts(
        "known_hosts",
        &format!("{} {}\n", server.known_name(), server.host_key()),
    );
    let refused = server.dir.path().join("id_not_authorized");
    keygen(&refused, "ed25519");
    let missing = server.dir.path().join("id_missing");
    for key in [&refused, &missing] {
        let out = exec(&server.inventory_with(key, ""), &kh, "text", &["true"]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains(&key.display().to_string()), "{text}");
        assert!(!text.contains("********"), "{text}");
    }
    let secret = "s3cret-become-pw";
    let inventory = server.inventory_with(
        &ssh_trust_server::client().key,
        &format!("ansible_become_password: {secret}\nansible_password: {secret}"),
    );
    let out = exec(&inventory, &kh, "text", &["echo", secret]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("********") && !text.contains(secret),
        "{text}"
    );
}

/// An inventory of two hosts, `a` on `first` and `b` on `second`, in `dir`.
fn two_host_inventory(dir: &Path, first: &Server, second: &Server) -> std::path::PathBuf {
    let key = ssh_trust_server::client().key.display().to_string();
    let host = |name: &str, port: u16| {
        format!(
            "    {name}:\n      ansible_host: 127.0.0.1\n      ansible_port: {port}\n      \
             ansible_user: {}\n      ansible_ssh_private_key_file: {key}\n",
            ssh_trust_server::USER
        )
    };
    let path = dir.join("two.yml");
    let text = format!(
        "all:\n  hosts:\n{}{}",
        host("a", first.port),
        host("b", second.port)
    );
    std::fs::write(&path, text).expect("inventory");
    path
}

/// Unknown keys across the fleet: one message naming every host with its fingerprint, and
/// one command that adds them all, creating the missing `.ssh` directory; after it, both
/// fleetup and ssh accept the hosts. accept-new says which keys it recorded.
#[test]
fn unknown_host_keys_are_told_once_with_one_command_for_all() {
    let (first, second) = (Server::openssh(""), Server::dropbear());
    let home = tempfile::tempdir().expect("tempdir");
    let kh = home.path().join("no-such-dir").join("known_hosts");
    let inventory = two_host_inventory(home.path(), &first, &second);
    let out = exec(&inventory, &kh, "text", &["true"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert_eq!(stderr.matches("2 hosts refused").count(), 1, "{stderr}");
    for server in [&first, &second] {
        assert!(stderr.contains(&server.known_name()), "{stderr}");
    }
    let command = stderr
        .lines()
        .find(|l| l.trim_start().starts_with("mkdir -p -m 700"))
        .unwrap_or_else(|| panic!("no command in {stderr}"))
        .trim();
    let ran = Command::new("sh")
        .args(["-c", command])
        .output()
        .expect("sh");
    assert!(ran.status.success(), "{command}: {ran:?}");
    for server in [&first, &second] {
        let (accepted, why) = server.ssh_verdict(&kh, &[]);
        assert!(accepted, "ssh after the command: {why}");
    }
    let out = exec(&inventory, &kh, "text", &["true"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).is_empty(), "{out:?}");

    let learned = home.path().join("learned_known_hosts");
    let out = Command::new(env!("CARGO_BIN_EXE_fleetup"))
        .args(["exec", "-i"])
        .arg(&inventory)
        .args(["all", "--known-hosts"])
        .arg(&learned)
        .args([
            "--host-key-checking",
            "accept-new",
            "--ssh-config",
            "/dev/null",
            "--",
            "true",
        ])
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null())
        .output()
        .expect("fleetup");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("accept-new recorded 2 new host keys"),
        "{stderr}"
    );
    for server in [&first, &second] {
        assert!(stderr.contains(&server.known_name()), "{stderr}");
        assert!(
            server.ssh_verdict(&learned, &[]).0,
            "ssh accepts what was recorded"
        );
    }
}

/// Removes a sudoers rule on drop.
struct SudoersRule(std::path::PathBuf);

impl SudoersRule {
    fn write(name: &str, rule: &str) -> SudoersRule {
        let path = Path::new("/etc/sudoers.d").join(name);
        std::fs::write(&path, rule).expect("sudoers rule");
        let ok = Command::new("chmod")
            .arg("0440")
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "chmod");
        SudoersRule(path)
    }
}

impl Drop for SudoersRule {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// sudoers allows the command, not the `/bin/sh -c` that become wraps it in: the error says
/// what sudo was asked to run. `ssh` on the same host shows the difference.
#[test]
fn a_become_refusal_says_what_sudo_was_asked_to_run() {
    let server = Server::openssh("");
    let kh = server.known_hosts(
        "known_hosts",
        &format!("{} {}\n", server.known_name(), server.host_key()),
    );
    let _rule = SudoersRule::write(
        "fleetup-trust-test",
        &format!(
            "{} ALL=(root) NOPASSWD: /usr/bin/id\n",
            ssh_trust_server::USER
        ),
    );
    let direct = server.ssh(&kh, &[], &["sudo -n /usr/bin/id -un"]);
    assert_eq!(
        String::from_utf8_lossy(&direct.stdout),
        "root\n",
        "{direct:?}"
    );
    let wrapped = server.ssh(&kh, &[], &["sudo -n -- /bin/sh -c '/usr/bin/id -un'"]);
    assert!(
        String::from_utf8_lossy(&wrapped.stderr).contains("a password is required"),
        "{wrapped:?}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_fleetup"))
        .args(["exec", "-i"])
        .arg(server.inventory())
        .args(["all", "--become", "--known-hosts"])
        .arg(&kh)
        .args(["--ssh-config", "/dev/null", "--", "/usr/bin/id -un"])
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null())
        .output()
        .expect("fleetup");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("to run `sudo -n -- /bin/sh -c '/usr/bin/id -un'`"),
        "{text}"
    );
    assert!(
        text.contains("NOPASSWD rule for the command itself does not cover /bin/sh"),
        "{text}"
    );
}
