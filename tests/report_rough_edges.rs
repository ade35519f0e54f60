//! The rough edges a new user hit (issue 22), each proven on the built binaries: whether a
//! run asks before it starts (a terminal on stdin, in tmux, with stdout piped to `tee`),
//! what the question counts, `--limit` in the plan, the help texts.

mod fleet;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use fleet::{sh_quote, Fleet, HostSpec, Spec};
use serde_json::Value;

const FLEETUP: &str = env!("CARGO_BIN_EXE_fleetup");
const UPGRADE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/playbooks/simplelogin-upgrade.yml"
);
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/inventories/example.yml");

fn fleetup(args: &[&str]) -> Output {
    Command::new(FLEETUP)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("fleetup runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A tmux server of our own (its own socket), killed when dropped.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs")
    }

    fn screen(&self) -> String {
        text(&self.cmd(&["capture-pane", "-p", "-J", "-t", "run"]).stdout)
    }

    /// Every row since the session started, the scrollback included.
    fn history(&self) -> String {
        text(
            &self
                .cmd(&["capture-pane", "-p", "-J", "-S", "-", "-t", "run"])
                .stdout,
        )
    }

    /// A session `run` of `cols` x `rows` running `script` with bash.
    fn start(socket: PathBuf, script: &Path, cols: usize, rows: usize) -> Tmux {
        let tmux = Tmux { socket };
        let (cols, rows) = (cols.to_string(), rows.to_string());
        let started = tmux.cmd(&[
            "new-session",
            "-d",
            "-s",
            "run",
            "-x",
            &cols,
            "-y",
            &rows,
            "bash",
            script.to_str().expect("a UTF-8 path"),
        ]);
        assert!(started.status.success(), "{}", text(&started.stderr));
        tmux
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

fn tmux_available() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Waits until `done` holds, up to a minute.
fn wait_for(what: &str, mut done: impl FnMut() -> bool, context: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} within a minute:\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `run ... 2>&1 | tee run.log` typed in a terminal: stdout is a pipe, stdin the terminal.
/// The run asks, and its question counts the host already at the target apart; `n`
/// declines and no host is touched. Without a terminal on stdin the same run goes ahead.
#[test]
fn a_run_piped_to_tee_asks_first_and_counts_only_the_hosts_to_upgrade() {
    if !tmux_available() {
        println!("SKIPPED: tmux is not installed (apt-get install -y tmux)");
        return;
    }
    let fleet = Fleet::start(
        Spec::new()
            .host(HostSpec::new("p-01", "production", "v4.65.0").canary())
            .host(HostSpec::new("p-02", "production", "v4.65.0"))
            .host(HostSpec::new("p-03", "production", "v4.66.1")),
    );
    let tmp = fleet.tmp();
    let q = |p: &Path| sh_quote(p.to_str().expect("a UTF-8 path"));
    let (exit_file, log) = (tmp.join("exit"), tmp.join("run.log"));
    let script = tmp.join("run.sh");
    std::fs::write(
        &script,
        format!(
            "set -o pipefail\n\
             {} run -i {} {} -e sl_version=v4.66.1 --known-hosts {} --state-dir {} 2>&1 | tee {}\n\
             echo $? > {}\nexec sleep 120\n",
            q(Path::new(FLEETUP)),
            q(&fleet.inventory_path()),
            q(Path::new(UPGRADE)),
            q(&fleet.known_hosts_path()),
            q(&tmp.join("state")),
            q(&log),
            q(&exit_file),
        ),
    )
    .expect("the script is written");
    let tmux = Tmux::start(tmp.join("tmux.sock"), &script, 200, 50);
    wait_for(
        "the question",
        || tmux.screen().contains("[y/N]"),
        || tmux.screen(),
    );
    let screen = tmux.screen();
    assert!(
        screen.contains(
            "Upgrade 2 hosts in 2 batches (1 more is at v4.66.1 already, its steps skipped: p-03)? [y/N]"
        ),
        "{screen}"
    );
    tmux.cmd(&["send-keys", "-t", "run", "-l", "n"]);
    tmux.cmd(&["send-keys", "-t", "run", "Enter"]);
    wait_for("fleetup ends", || exit_file.exists(), || tmux.screen());
    std::thread::sleep(Duration::from_millis(200));
    let exit = std::fs::read_to_string(&exit_file).unwrap_or_default();
    assert_eq!(exit.trim(), "99", "declined:\n{}", tmux.screen());
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logged.contains("not started; no host was changed."),
        "{logged}"
    );
    for host in ["p-01", "p-02"] {
        let pulled = fleet
            .commands(host)
            .iter()
            .any(|c| c.cmd.contains("docker pull"));
        assert!(!pulled, "{host} was touched after a no");
    }

    // No terminal on stdin (cron, CI): the same command goes ahead without asking.
    let quick = tmp.join("quick.yml");
    std::fs::write(
        &quick,
        "name: quick\nhosts: production\nsteps:\n  - name: say hello\n    shell: echo hello\n",
    )
    .expect("the playbook is written");
    let out = fleetup(&[
        "run",
        "-i",
        fleet.inventory_path().to_str().unwrap_or_default(),
        quick.to_str().unwrap_or_default(),
        "--known-hosts",
        fleet.known_hosts_path().to_str().unwrap_or_default(),
        "--state-dir",
        tmp.join("state").to_str().unwrap_or_default(),
    ]);
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}{}", text(&out.stderr));
    assert!(!said.contains("[y/N]"), "{said}");
    assert!(said.contains("3 ok"), "{said}");
}

/// A Ctrl-C in a terminal while a batch runs: the hosts in flight finish, the run halts,
/// and the scrollback keeps the finished hosts and the recap, not a live header.
#[test]
fn after_a_ctrl_c_no_live_line_is_left_on_screen() {
    if !tmux_available() {
        println!("SKIPPED: tmux is not installed (apt-get install -y tmux)");
        return;
    }
    let fleet = Fleet::start(Spec::new().group("production", "p", 3, "v4.65.0"));
    let tmp = fleet.tmp();
    let q = |p: &Path| sh_quote(p.to_str().expect("a UTF-8 path"));
    let playbook = tmp.join("slow.yml");
    std::fs::write(
        &playbook,
        "name: slow\nhosts: production\nsteps:\n  - name: wait\n    shell: sleep 2\n",
    )
    .expect("the playbook is written");
    let (exit_file, script) = (tmp.join("exit"), tmp.join("run.sh"));
    std::fs::write(
        &script,
        format!(
            "trap : INT\n{} run -i {} {} --known-hosts {} --state-dir {} --yes --serial 1 --canary none\n\
             echo $? > {}\nexec sleep 120\n",
            q(Path::new(FLEETUP)),
            q(&fleet.inventory_path()),
            q(&playbook),
            q(&fleet.known_hosts_path()),
            q(&tmp.join("state")),
            q(&exit_file),
        ),
    )
    .expect("the script is written");
    let tmux = Tmux::start(tmp.join("tmux.sock"), &script, 100, 30);
    wait_for(
        "batch 2",
        || tmux.screen().contains("batch 2 of 3"),
        || tmux.screen(),
    );
    // The echo would wrap the last live line (`^C` after a full-width row) and shift
    // them all: whether it does depends on the moment, so the setting is checked too.
    let tty = text(
        &tmux
            .cmd(&["display-message", "-p", "-t", "run", "#{pane_tty}"])
            .stdout,
    );
    let echoctl = || {
        let out = Command::new("stty")
            .args(["-a", "-F", tty.trim()])
            .output()
            .expect("stty runs");
        text(&out.stdout)
            .split_whitespace()
            .find(|w| w.ends_with("echoctl"))
            .map(str::to_string)
    };
    assert_eq!(
        echoctl().as_deref(),
        Some("-echoctl"),
        "while live lines are drawn"
    );
    tmux.cmd(&["send-keys", "-t", "run", "C-c"]);
    wait_for("fleetup ends", || exit_file.exists(), || tmux.screen());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(echoctl().as_deref(), Some("echoctl"), "restored at the end");
    let history = tmux.history();
    assert_eq!(
        std::fs::read_to_string(&exit_file)
            .unwrap_or_default()
            .trim(),
        "99",
        "{history}"
    );
    assert!(history.contains("RECAP"), "{history}");
    let stray: Vec<&str> = history
        .lines()
        .filter(|l| l.starts_with("slow on production"))
        .collect();
    assert!(
        stray.is_empty(),
        "live lines left behind: {stray:?}\n{history}"
    );
}

#[test]
fn the_plan_names_the_limit_in_text_and_json() {
    let args = [
        "plan",
        "-i",
        EXAMPLE,
        UPGRADE,
        "-e",
        "sl_version=v4.66.1",
        "--limit",
        "sl-prod-0*",
    ];
    let out = fleetup(&args);
    let plan = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{plan}{}", text(&out.stderr));
    assert!(
        plan.contains("hosts     5 of "),
        "five hosts selected:\n{plan}"
    );
    assert!(
        plan.contains("selected by `simplelogin --limit sl-prod-0*`"),
        "{plan}"
    );
    let out = fleetup(&[&args[..], &["--output", "json"]].concat());
    let json: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(json["limit"], "sl-prod-0*", "{json}");
    assert_eq!(json["host_count"], 5, "{json}");
    // Without --limit the key says so.
    let out = fleetup(&args[..6]);
    let json_args = [&args[..6], &["--output", "json"]].concat();
    assert!(!text(&out.stdout).contains("--limit"));
    let json: Value = serde_json::from_slice(&fleetup(&json_args).stdout).expect("one JSON object");
    assert_eq!(json["limit"], Value::Null, "{json}");
}

#[test]
fn the_help_texts_say_what_commands_do_and_every_exit_code() {
    let top = text(&fleetup(&["--help"]).stdout);
    let codes = top
        .split("Exit codes:")
        .nth(1)
        .expect("the exit codes in --help")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for code in ["0 ", "2 ", "3 ", "4 ", "5 ", "6 ", "99 "] {
        assert!(
            codes.starts_with(code) || codes.contains(&format!(", {code}")),
            "exit code {code}missing: {codes}"
        );
    }
    let check = text(&fleetup(&["check", "--help"]).stdout);
    assert!(!check.contains("without contacting any"), "{check}");
    assert!(check.contains("pre-flight on every"), "{check}");
}

/// Every option of `fleet-sim fault` says what it does.
#[test]
fn fleet_sim_fault_help_describes_each_option() {
    let out = Command::new(fleet::sim())
        .args(["fault", "--help"])
        .output()
        .expect("fleet-sim runs");
    let help = text(&out.stdout);
    let options: Vec<&str> = help
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("--") && !l.starts_with("--help"))
        .collect();
    assert_eq!(options.len(), 10, "{help}");
    for line in &options {
        let described = line.split("  ").filter(|s| !s.trim().is_empty()).count() > 1;
        assert!(described, "undocumented: {line}\n{help}");
    }
}
