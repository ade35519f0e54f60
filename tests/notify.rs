//! Notifications of a run that halts on its canary, against servers on 127.0.0.1 started
//! here: a webhook that answers (it gets the events the playbook asked for, as JSON with a
//! `text` line, the run's secret hidden), a command (the event on its stdin), and from
//! `--notify` a webhook that accepts and never answers and a command that fails: the run
//! is not slowed, and the recap and the journal say what was not received.

mod fleet;
mod fleetup_cli;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleet::{Fleet, Spec};
use serde_json::{json, Value};

const SECRET: &str = "s3cr3t-t0ken-value";

/// What a webhook was sent: (path, content type, body).
type Posts = Arc<Mutex<Vec<(String, String, String)>>>;

/// A webhook on 127.0.0.1 that keeps what it is sent.
fn webhook() -> (u16, Posts) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = listener.local_addr().expect("its address").port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let kept = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            if let Some(request) = read_request(&stream) {
                kept.lock().expect("the list").push(request);
            }
            let mut stream = stream;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (port, got)
}

fn read_request(stream: &TcpStream) -> Option<(String, String, String)> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let (mut length, mut kind) = (0, String::new());
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            "content-type" => kind = value.trim().to_string(),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((path, kind, String::from_utf8_lossy(&body).into_owned()))
}

/// A webhook that accepts connections and never answers.
fn dead_webhook() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = listener.local_addr().expect("its address").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().map_while(Result::ok) {
            held.push(stream);
        }
    });
    port
}

#[test]
fn notifiers_get_their_events_and_a_dead_one_delays_nothing() {
    let fleet = Fleet::start(Spec::new().group("production", "p", 3, "v4.65.0"));
    fleet.fault(
        "p-01",
        json!({"match": "work-step", "action": "fail",
               "stderr": format!("denied for token={SECRET}")}),
    );
    let (port, received) = webhook();
    let dead = dead_webhook();
    let tmp = fleet.tmp();
    let heard = tmp.join("heard.jsonl");
    let playbook = notified_playbook(tmp, port, &heard);
    let s = |p: &std::path::Path| p.to_str().unwrap_or_default().to_string();
    let started = Instant::now();
    let out = fleetup_cli::cli(&fleetup_cli::strings(&[
        "run",
        "-i",
        &s(&fleet.inventory_path()),
        &s(&playbook),
        "--known-hosts",
        &s(&fleet.known_hosts_path()),
        "--state-dir",
        &s(&tmp.join("state")),
        "--yes",
        "--serial",
        "1",
        "--canary",
        "1",
        "--notify",
        &format!("webhook:http://127.0.0.1:{dead}/never/answers"),
        "--notify",
        "command:exit 3",
    ]));
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stdout}");

    assert_the_webhook_got_what_needs_a_person(&received);
    assert_the_command_heard_its_events(&heard);
    assert_the_dead_ones_only_warned(&stdout, dead, &tmp.join("state"), took);
}

/// The playbook `notified` of a run: one step, a secret, and its own notifiers: the
/// webhook on `port` (every default event) and a command that appends the events it asked
/// for to `heard`.
fn notified_playbook(tmp: &Path, port: u16, heard: &Path) -> PathBuf {
    let playbook = tmp.join("notified.yml");
    std::fs::write(
        &playbook,
        format!(
            "name: notified\nhosts: production\nsecrets: [api_token]\nvars:\n  api_token: {SECRET}\n\
             notifications:\n  - webhook: http://127.0.0.1:{port}/hooks/T0/B0/hook-secret\n\
             \x20 - command: \"cat >> {heard}; echo >> {heard}\"\n    on: [run_started, halted, run_finished]\n\
             steps:\n  - name: work\n    shell: \"echo work-step {{{{ api_token }}}}\"\n",
            heard = heard.display()
        ),
    )
    .expect("the playbook is written");
    playbook
}

/// The webhook: what needs a person and the end, each with its line for a chat.
fn assert_the_webhook_got_what_needs_a_person(received: &Posts) {
    let posts = received.lock().expect("the list").clone();
    let events: Vec<String> = posts
        .iter()
        .map(|(_, _, body)| {
            let v: Value = serde_json::from_str(body).expect("JSON");
            v["event"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!(
        events,
        ["host_failed", "halted", "run_finished"],
        "{posts:?}"
    );
    for (path, kind, body) in &posts {
        assert_eq!(path, "/hooks/T0/B0/hook-secret");
        assert_eq!(kind, "application/json");
        assert!(!body.contains(SECRET), "the secret was sent: {body}");
    }
    let failed: Value = serde_json::from_str(&posts[0].2).expect("JSON");
    let text = failed["text"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("fleetup notified on production (run ")
            && text.contains("p-01 FAILED at `work`: denied for token=********"),
        "{text}"
    );
}

/// The command: the events it asked for, on its stdin.
fn assert_the_command_heard_its_events(heard: &Path) {
    let heard = std::fs::read_to_string(heard).expect("the command ran");
    let heard: Vec<String> = heard
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("JSON");
            v["event"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!(heard, ["run_started", "halted", "run_finished"]);
}

/// The dead webhook and the failing command: warnings (on screen and in the journal of
/// the run in `state`), and the run was not slowed (fleetup `took` in all).
fn assert_the_dead_ones_only_warned(stdout: &str, dead: u16, state: &Path, took: Duration) {
    assert!(
        stdout.contains(&format!(
            "warning: webhook http://127.0.0.1:{dead}/… did not receive host_failed, halted, run_finished: not sent within 3s of the run's end; the run went on"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "warning: command `exit` did not receive halted: it exited with exit status: 3"
        ),
        "{stdout}"
    );
    assert!(
        !stdout.contains("never/answers"),
        "a webhook's path in a warning"
    );
    let run_dir = fleetup_cli::run_dirs(state)
        .pop()
        .expect("the run's directory");
    let (journal, _) = fleetup_cli::journal(&run_dir);
    let warned = journal
        .iter()
        .filter(|e| e["event"] == "notifier_failed")
        .count();
    assert!(warned >= 4, "{journal:?}");
    let finished = journal
        .iter()
        .find(|e| e["event"] == "run_finished")
        .expect("run_finished");
    let run_ms = finished["duration_ms"].as_u64().unwrap_or(u64::MAX);
    println!("run {run_ms} ms, fleetup {took:?} (a notifier's timeout is 5 s)");
    assert!(run_ms < 4_000, "the run waited for a notifier: {run_ms} ms");
    assert!(took < Duration::from_secs(12), "fleetup took {took:?}");
}

/// A webhook whose certificate no authority signed (`openssl s_server` with a self-signed
/// one made by `openssl req`): the notification is refused, not sent in the clear or to
/// whoever answers.
#[test]
fn a_webhook_s_certificate_is_verified() {
    let dir = tempfile::tempdir().expect("a directory");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
        ])
        .arg("/CN=127.0.0.1")
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut server = std::process::Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-www",
            "-accept",
            &port.to_string(),
            "-cert",
        ])
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl s_server starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "s_server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let notifier = fleetup::notify::Notifier::parse_flag(&format!(
        "webhook:https://127.0.0.1:{port}/hooks/secret"
    ))
    .expect("a notifier");
    let sent = fleetup::notify::deliver(&notifier, &json!({"text": "hello"}));
    let _ = server.kill();
    let _ = server.wait();
    let error = sent.expect_err("an unknown issuer is refused").to_string();
    println!("{error}");
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    assert!(!error.contains("hooks/secret"), "{error}");
}

/// A notifier written wrong is an input error naming the file, line and entry; nothing
/// is contacted.
#[test]
fn a_bad_notifier_is_an_input_error_with_its_place() {
    let dir = tempfile::tempdir().expect("a directory");
    let inventory = dir.path().join("inventory.yml");
    std::fs::write(&inventory, "all:\n  hosts:\n    p-01:\n").expect("the inventory");
    let playbook = dir.path().join("bad.yml");
    std::fs::write(
        &playbook,
        "name: bad\nhosts: all\nnotifications:\n  - webhook: https://ok.example.com/x\n  - webhook: ftp://files.example.com/hook\nsteps:\n  - name: work\n    shell: \"true\"\n",
    )
    .expect("the playbook");
    let s = |p: &std::path::Path| p.to_str().unwrap_or_default().to_string();
    let out = fleetup_cli::cli(&[
        "check".into(),
        "--offline".into(),
        "-i".into(),
        s(&inventory),
        s(&playbook),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        err.contains("bad.yml:5:12: notifications[1]: a webhook is an http:// or https:// URL"),
        "{err}"
    );
    let flag = fleetup_cli::cli(&[
        "run".into(),
        "-i".into(),
        s(&inventory),
        s(&playbook),
        "--notify".into(),
        "email:ops@example.com".into(),
    ]);
    let err = String::from_utf8_lossy(&flag.stderr);
    assert_eq!(flag.status.code(), Some(5), "{err}");
    assert!(err.contains("use webhook:URL or command:COMMAND"), "{err}");
}
