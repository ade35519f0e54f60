//! fleetup against hostile or careless input and output, on the test fleet: values that
//! look like shell, secrets, a step that prints a gigabyte, escape sequences from a host,
//! and a thousand hosts that never answer.

mod fleet;
mod fleetup_cli;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fleet::{Blackhole, Fleet, HostSpec, Spec};
use fleetup_cli::*;
use serde_json::Value;

const V: &str = "v4.65.0";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a test file");
    path
}

/// Every file under `dir` that contains `needle`, with the first line it is on.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
                    let line_start = bytes[..at]
                        .iter()
                        .rposition(|&b| b == b'\n')
                        .map_or(0, |i| i + 1);
                    let line_end = bytes[at..]
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(bytes.len(), |i| at + i);
                    found.push(format!(
                        "{}: {}",
                        path.display(),
                        String::from_utf8_lossy(&bytes[line_start..line_end])
                    ));
                }
            }
        }
    }
    found
}

/// A fleetup process run to its end, with what the kernel counted for it alone.
struct Measured {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
    peak_rss_kb: i64,
    /// The most descriptors it held at once, sampled every 20 ms.
    peak_fds: usize,
}

/// Runs `sh -c SCRIPT` (which execs fleetup, e.g. after `ulimit`) and measures it: wait4
/// gives the process's own peak RSS, not the largest of every child this test reaped.
fn measure(fleet: &Fleet, script: &str, env: &[(&str, &str)]) -> Measured {
    let out = fleet.tmp().join("measured.out");
    let err = fleet.tmp().join("measured.err");
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .current_dir(REPO)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("start fleetup");
    let pid = child.id() as libc::pid_t;
    let started = Instant::now();
    let mut peak_fds = 0;
    let mut status = 0;
    // SAFETY: rusage is plain data, written by wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waits for our own child, without blocking; fills status and usage.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(r >= 0, "wait4: {}", std::io::Error::last_os_error());
        if r == pid {
            break;
        }
        if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
            peak_fds = peak_fds.max(fds.count());
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "fleetup ran for over 5 minutes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The child was reaped by wait4: forget it rather than wait on it again.
    std::mem::forget(child);
    Measured {
        code: libc::WEXITSTATUS(status),
        stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
        took: started.elapsed(),
        peak_rss_kb: usage.ru_maxrss,
        peak_fds,
    }
}

fn run_args(fleet: &Fleet, inventories: &[&Path], playbook: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = strings(&["run"]);
    for inv in inventories {
        args.push("-i".into());
        args.push(s(inv));
    }
    args.push(s(playbook));
    args.push("--known-hosts".into());
    args.push(s(&fleet.known_hosts_path()));
    args.push("--yes".into());
    args.extend(strings(extra));
    args
}

/// The shipped upgrade on a host whose app directory's name is shell syntax, and a
/// playbook that prints inventory values made of shell: the commands run as written and
/// the values arrive as text, because every template value is passed through `quote`.
#[test]
fn inventory_values_that_look_like_shell_reach_the_host_as_text() {
    let tmp = tempfile::tempdir().expect("tmp");
    let hostile = format!(
        "{}/sl x; touch fleetup-pwned-1 $(touch fleetup-pwned-2) `touch fleetup-pwned-3` 'q\" end",
        tmp.path().display()
    );
    let fleet =
        Fleet::start(Spec::new().host(HostSpec::new("q-01", "production", V).app_path(&hostile)));
    let r = run(&fleet, &[]);
    r.assert_exit(0);
    assert_healthy_at(&fleet, "q-01", TARGET);

    let values = write(
        fleet.tmp(),
        "values.yml",
        "all:\n  hosts:\n    q-01:\n      note: 'x; touch fleetup-pwned-4'\n      who: '$(id)'\n      tick: '`id`'\n",
    );
    let pb = write(
        fleet.tmp(),
        "print.yml",
        r#"name: print
hosts: all
steps:
  - name: print
    shell: |
      printf '[%s]\n' {{ note | quote }} {{ who | quote }} {{ tick | quote }}
"#,
    );
    let args = run_args(
        &fleet,
        &[&fleet.inventory_path(), &values],
        &pb,
        &["--output", "json"],
    );
    let out = cli(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let log = run_dirs(&state_dir(&fleet))
        .pop()
        .expect("a run dir")
        .join("hosts/q-01.log");
    let log = std::fs::read_to_string(log).expect("host log");
    assert!(
        log.contains("\n[x; touch fleetup-pwned-4]\n[$(id)]\n[`id`]\n"),
        "{log}"
    );
    // Nothing of the values ran, wherever a session's shell could have run it.
    let home = fleet.ssh("q-01", "pwd");
    let home = fleet::stdout(&home);
    for dir in [home.trim(), "/tmp", "/root", REPO, &s(fleet.dir())] {
        let found = fleet::sh(&format!(
            "find {} -maxdepth 3 -name 'fleetup-pwned-*'",
            fleet::sh_quote(dir)
        ));
        assert!(found.is_empty(), "a value ran as a command: {found}");
    }
}

/// What a host prints is data: braces in a registered output are never rendered on the
/// controller (Ansible's `unsafe`), whoever reads it, a later step, a variable, the step's
/// own condition, a pre-flight's findings at the turn. Rendered, a host could have the
/// controller read its environment or files and send them back in the next command.
#[test]
fn a_hosts_output_is_never_rendered_as_a_template() {
    let fleet = Fleet::start(Spec::new().host(HostSpec::new("q-01", "production", V)));
    let said = "{{ lookup('env', 'HARDENING_SECRET') }} {{ 6 * 7 }}";
    let pb = write(
        fleet.tmp(),
        "unsafe.yml",
        r#"name: unsafe
hosts: all
vars:
  said: "{% raw %}{{ lookup('env', 'HARDENING_SECRET') }} {{ 6 * 7 }}{% endraw %}"
  heard: "{{ out.stdout }}"
preflight:
  - name: early
    shell: printf '%s\n' {{ said | quote }}
    register: early
steps:
  - name: say
    shell: printf '%s\n' {{ said | quote }}
    register: out
    failed_when: "'42' in result.stdout or 's3cret' in out.stdout"
  - name: repeat
    shell: printf '[%s]\n' {{ out.stdout | quote }} {{ heard | quote }} {{ early.stdout | quote }}
"#,
    );
    let args = run_args(
        &fleet,
        &[&fleet.inventory_path()],
        &pb,
        &["--output", "json"],
    );
    let out = cli_env(&args, &[("HARDENING_SECRET", "s3cret")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let repeated = fleet.commands("q-01");
    let repeated = repeated.last().expect("the last command").cmd.clone();
    assert!(
        !repeated.contains("s3cret") && !repeated.contains(" 42"),
        "{repeated}"
    );
    let log = run_dirs(&state_dir(&fleet)).pop().expect("a run dir");
    let log = std::fs::read_to_string(log.join("hosts/q-01.log")).expect("host log");
    assert!(
        log.contains(&format!("\n[{said}]\n[{said}]\n[{said}]\n")),
        "{log}"
    );
}

/// The playbook of the secrets test: it uses the password on the host, then fails with it
/// and the token in its output.
const SECRETS_PLAYBOOK: &str = r#"name: secrets
hosts: all
secrets: [db_password]
vars:
  db_password: "{{ lookup('env', 'FLEETUP_TEST_DB_PASSWORD') }}"
steps:
  - name: use it
    shell: |
      printf 'connecting with %s\n' {{ db_password | quote }}
      printf '%s' {{ db_password | quote }} > "$(dirname {{ fleetup_dir | quote }})/../used-password"
  - name: fail with it
    shell: |
      echo 'FATAL: password authentication failed for '{{ db_password | quote }} >&2
      echo token {{ api_token | quote }}
      exit 3
"#;

/// A secret (listed in `secrets:`, from the environment) and a secret-looking extra
/// variable are used on the host, echoed back by a command that fails, and never appear
/// on screen, in the JSON events, in the journal or in the host logs.
#[test]
fn secrets_never_appear_in_output_journal_or_logs() {
    let fleet = Fleet::start(Spec::new().group("production", "s", 2, V));
    let password = "Pa55 w0rd;$HOME'x";
    let token = "tok-7f3a9c2e51";
    let pb = write(fleet.tmp(), "secrets.yml", SECRETS_PLAYBOOK);
    let seen = SecretsSeen::run_and_plan(&fleet, &pb, password, token);
    // The hosts did get the real values.
    for host in ["s-01", "s-02"] {
        let used = fleet.app_path(host).join("../used-password");
        assert_eq!(
            std::fs::read_to_string(&used).expect("used-password"),
            password
        );
    }
    seen.assert_no_secret_shown_or_journaled(&fleet, &[password, token, "Pa55 w0rd"]);
    seen.assert_masked_where_the_secrets_were();
}

/// What the operator got from the secrets playbook three ways: a run with JSON events,
/// the same run as text, and `plan --verbose`.
struct SecretsSeen {
    json: Finished,
    text: FinishedText,
    plan: String,
}

impl SecretsSeen {
    /// Both runs fail on the step that prints the secrets (exit 2).
    fn run_and_plan(fleet: &Fleet, pb: &Path, password: &str, token: &str) -> SecretsSeen {
        let env = [("FLEETUP_TEST_DB_PASSWORD", password)];
        let token_var = format!("api_token={token}");
        let run = |output: &[&str]| {
            let extra = [&["-e", &token_var, "--canary", "none"][..], output].concat();
            let args = run_args(fleet, &[&fleet.inventory_path()], pb, &extra);
            spawn_args_env(fleet, &args, &env)
        };
        let json = run(&["--output", "json"]).wait();
        json.assert_exit(2);
        let text = run(&[]).wait_text();
        assert_eq!(text.code, 2, "{}", text.screen());
        let plan = cli_env(
            &[
                "plan".into(),
                "--verbose".into(),
                "-i".into(),
                s(&fleet.inventory_path()),
                s(pb),
                "-e".into(),
                token_var.clone(),
            ],
            &env,
        );
        let plan = format!(
            "{}{}",
            String::from_utf8_lossy(&plan.stdout),
            String::from_utf8_lossy(&plan.stderr)
        );
        SecretsSeen { json, text, plan }
    }

    fn assert_no_secret_shown_or_journaled(&self, fleet: &Fleet, secrets: &[&str]) {
        let (json, text, plan) = (&self.json, &self.text, &self.plan);
        let json_stdout: String = json.events.iter().map(|e| e.to_string() + "\n").collect();
        for &secret in secrets {
            for (what, shown) in [
                ("JSON events", &json_stdout),
                ("stderr of the JSON run", &json.stderr),
                ("the text run's screen", &text.screen()),
                ("plan --verbose", plan),
            ] {
                assert!(!shown.contains(secret), "{what} shows {secret:?}:\n{shown}");
            }
            let leaks = files_containing(&state_dir(fleet), secret.as_bytes());
            assert!(
                leaks.is_empty(),
                "the journal keeps {secret:?}:\n{}",
                leaks.join("\n")
            );
        }
    }

    /// Hidden, not dropped: the operator still sees where the secret was.
    fn assert_masked_where_the_secrets_were(&self) {
        let (json, plan) = (&self.json, &self.plan);
        let failed = json
            .of("step_finished")
            .into_iter()
            .find(|e| e["name"] == "fail with it" && e["host"] == "s-01")
            .expect("the failing step's event");
        assert_eq!(
            failed["stderr_tail"],
            serde_json::json!(["FATAL: password authentication failed for ********"])
        );
        assert!(
            plan.contains("printf 'connecting with %s\\n' ********"),
            "{plan}"
        );
        let log = std::fs::read_to_string(json.run_dir().join("hosts/s-01.log")).expect("host log");
        assert!(log.contains("connecting with ********\n"), "{log}");
        assert!(log.contains("token ********"), "{log}");
        let record = run_json(&json.run_dir());
        assert_eq!(record["extra_vars"]["api_token"], "********");
    }
}

/// A step that prints a gigabyte without a newline (and 64 MiB of stderr): it streams to
/// the host's log, the run keeps a bounded head and tail, and fleetup's memory stays flat.
#[test]
fn a_step_printing_a_gigabyte_streams_to_the_log_in_bounded_memory() {
    let fleet = Fleet::start(Spec::new().group("production", "g", 1, V));
    let pb = write(
        fleet.tmp(),
        "flood.yml",
        r#"name: flood
hosts: all
steps:
  - name: flood
    shell: |
      head -c 1073741824 /dev/zero | tr '\0' x
      head -c 67108864 /dev/zero | tr '\0' y >&2
    register: flood
  - name: after
    shell: echo kept {{ flood.stdout | length }} bytes of stdout
"#,
    );
    let args: Vec<String> = run_args(&fleet, &[&fleet.inventory_path()], &pb, &[])
        .iter()
        .map(|a| fleet::sh_quote(a))
        .collect();
    let m = measure(
        &fleet,
        &format!("exec {} {}", fleet::sh_quote(FLEETUP), args.join(" ")),
        &[],
    );
    println!(
        "FIGURES 1 GiB step: peak RSS {} MiB, took {:.1}s, stdout of fleetup {} bytes",
        m.peak_rss_kb / 1024,
        m.took.as_secs_f64(),
        m.stdout.len()
    );
    assert_eq!(m.code, 0, "{}\n{}", m.stdout, m.stderr);
    let log = state_dir(&fleet);
    let run = run_dirs(&log).pop().expect("a run dir");
    let log = run.join("hosts/g-01.log");
    let size = std::fs::metadata(&log).expect("host log").len();
    assert!(
        size > (1 << 30) + (64 << 20),
        "the log has all the output: {size} bytes"
    );
    let tail = Command::new("tail")
        .args(["-c", "4096"])
        .arg(&log)
        .output()
        .expect("tail");
    let tail = String::from_utf8_lossy(&tail.stdout);
    assert!(tail.contains("kept 1048576 bytes of stdout"), "{tail}");
    assert!(m.peak_rss_kb < 100 * 1024, "peak RSS {} KiB", m.peak_rss_kb);
    assert!(
        m.stdout.len() < 64 << 10,
        "the screen got {} bytes",
        m.stdout.len()
    );
}

/// Escape sequences a host prints (retitle the window, clear the screen, move the cursor,
/// ring the bell) reach the screen as visible text, never as control characters.
#[test]
fn escape_sequences_from_a_host_are_neutralised_on_screen() {
    let fleet = Fleet::start(Spec::new().group("production", "e", 1, V));
    let pb = write(
        fleet.tmp(),
        "escapes.yml",
        r#"name: escapes
hosts: all
steps:
  - name: hostile
    shell: |
      printf '\033]0;PWNED\007\033[2J\033[1;1H\033[31mred\r\033[8mhidden\n' >&2
      exit 1
"#,
    );
    let text = spawn_args(
        &fleet,
        &run_args(&fleet, &[&fleet.inventory_path()], &pb, &[]),
    )
    .wait_text();
    assert_eq!(text.code, 2, "{}", text.screen());
    assert!(
        !text.screen().contains(['\x1b', '\x07', '\r']),
        "control characters on screen: {:?}",
        text.screen()
    );
    assert!(
        text.screen().contains("\\x1b]0;PWNED\\x07"),
        "{}",
        text.screen()
    );
    // fleetup exec shows whole outputs: the same there.
    let out = cli(&[
        "exec".into(),
        "-i".into(),
        s(&fleet.inventory_path()),
        "all".into(),
        "--known-hosts".into(),
        s(&fleet.known_hosts_path()),
        "--".into(),
        // One shell line, as `ssh host 'printf ...'`: exec joins its words for the shell.
        "printf '\\033[2Jcleared\\033]0;PWNED\\007\\n'".into(),
    ]);
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(!screen.contains(['\x1b', '\x07']), "{screen:?}");
    assert!(screen.contains("\\x1b[2Jcleared"), "{screen}");
}

/// A thousand hosts that never answer, half refused and half blackholed, at once: the run
/// ends in about one connect timeout per round of forks, every host is reported
/// unreachable, and memory and descriptors stay bounded. Under a low open-file limit,
/// forks is clamped with a warning instead of failing half-way.
#[test]
fn a_thousand_unreachable_hosts_end_in_bounded_time_memory_and_descriptors() {
    // No host of it is reachable; the fleet only gives the run a directory and known_hosts.
    let fleet = Fleet::start(Spec::new().group("production", "u", 1, V));
    let hole = Blackhole::create();
    let inv = inventory_of_a_thousand_unreachable_hosts(&fleet, &hole);
    let fleetup = fleetup_on_every_host_at_once(&fleet, &inv);
    for (limits, max_fds) in [("", 20_000), ("ulimit -Sn 256 && ulimit -Hn 512 && ", 512)] {
        assert_all_unreachable_in_bounds(&fleet, limits, &fleetup, max_fds);
    }
}

/// Even hosts on ports where nothing listens (refused at once), odd ones behind the
/// blackhole (no answer until the connect timeout).
fn inventory_of_a_thousand_unreachable_hosts(fleet: &Fleet, hole: &Blackhole) -> PathBuf {
    let refused: Vec<u16> = (0..16)
        .map(|_| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        })
        .collect();
    let mut inv = String::from("all:\n  hosts:\n");
    for i in 0..1000 {
        let (address, port) = if i % 2 == 0 {
            ("127.0.0.1", refused[i % refused.len()])
        } else {
            (hole.address, 22)
        };
        inv.push_str(&format!(
            "    h-{i:04}:\n      ansible_host: {address}\n      ansible_port: {port}\n      ansible_user: nobody\n"
        ));
    }
    write(fleet.tmp(), "unreachable.yml", &inv)
}

/// The shell line that execs fleetup on a trivial playbook, all 1000 hosts in one batch
/// with 1000 forks.
fn fleetup_on_every_host_at_once(fleet: &Fleet, inv: &Path) -> String {
    let pb = write(
        fleet.tmp(),
        "trivial.yml",
        "name: trivial\nhosts: all\nsteps:\n  - name: nothing\n    shell: 'true'\n",
    );
    let args: Vec<String> = run_args(
        fleet,
        &[inv],
        &pb,
        &[
            "--forks",
            "1000",
            "--serial",
            "1000",
            "--canary",
            "none",
            "--connect-timeout",
            "3",
            "--output",
            "json",
        ],
    )
    .iter()
    .map(|a| fleet::sh_quote(a))
    .collect();
    format!("exec {} {}", fleet::sh_quote(FLEETUP), args.join(" "))
}

/// One run after `limits` (none, or a low open-file limit): exit 4 with every host
/// unreachable, within the time, memory and descriptor bounds.
fn assert_all_unreachable_in_bounds(fleet: &Fleet, limits: &str, fleetup: &str, max_fds: usize) {
    let m = measure(fleet, &format!("{limits}{fleetup}"), &[]);
    println!(
        "FIGURES 1000 unreachable hosts{}: took {:.1}s, peak RSS {} MiB, peak fds {}",
        if limits.is_empty() {
            ""
        } else {
            " under ulimit -n 512"
        },
        m.took.as_secs_f64(),
        m.peak_rss_kb / 1024,
        m.peak_fds
    );
    assert_eq!(m.code, 4, "all unreachable:\n{}", m.stderr);
    let events: Vec<Value> = m
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON event"))
        .collect();
    let unreachable = events
        .iter()
        .filter(|e| e["event"] == "host_finished" && e["outcome"] == "unreachable")
        .count();
    assert_eq!(unreachable, 1000, "{}", m.stderr);
    assert!(m.peak_rss_kb < 150 * 1024, "peak RSS {} KiB", m.peak_rss_kb);
    assert!(m.peak_fds <= max_fds, "peak fds {}", m.peak_fds);
    if limits.is_empty() {
        // 500 blackholed hosts at once: one connect timeout, not 500 of them.
        assert!(m.took < Duration::from_secs(20), "took {:?}", m.took);
        assert!(!m.stderr.contains("forks"), "{}", m.stderr);
    } else {
        assert!(
            m.stderr.contains("warning: forks 1000 needs more open files than the limit of 512 allows: running 149 hosts at once"),
            "{}",
            m.stderr
        );
        // 500 blackholed hosts, 149 at a time: four rounds of the timeout.
        assert!(m.took < Duration::from_secs(40), "took {:?}", m.took);
    }
}
