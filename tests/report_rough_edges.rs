//! The rough edges a new user hit (issue 22), each proven on the built binaries: whether a
//! run asks before it starts (a terminal on stdin, in tmux, with stdout piped to `tee`),
//! what the question counts, `--limit` in the plan, the help texts.

mod fleet;
mod fleetup_cli;
mod tmux;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use fleet::{sh_quote, Fleet, HostSpec, Spec};
use serde_json::Value;
use tmux::Tmux;

const FLEETUP: &str = env!("CARGO_BIN_EXE_fleetup");
const UPGRADE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/playbooks/simplelogin-upgrade.yml"
);
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/inventories/example.yml");

fn fleetup(args: &[&str]) -> Output {
    fleetup_cli::cli(&fleetup_cli::strings(args))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The visible screen, or with `history` every row since the start, as one text.
fn screen(tmux: &Tmux, history: bool) -> String {
    tmux.capture(history).join("\n")
}

/// `script` run by bash in a terminal of `cols` x `rows`.
fn in_terminal(socket: PathBuf, script: &Path, cols: usize, rows: usize) -> Tmux {
    Tmux::start(
        socket,
        cols,
        rows,
        &["bash", script.to_str().expect("a UTF-8 path")],
    )
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

/// Waits for the fleetup in `tmux` to end: its script writes `exit_file` then.
fn wait_for_the_end(tmux: &Tmux, exit_file: &Path) {
    wait_for(
        "fleetup ends",
        || exit_file.exists(),
        || screen(tmux, false),
    );
}

/// A path quoted for the shell scripts the terminal runs.
fn q(p: &Path) -> String {
    sh_quote(p.to_str().expect("a UTF-8 path"))
}

/// A script that runs fleetup in a tmux terminal, then writes its exit code to
/// `exit_file` and stays, so that the screen can still be read.
struct TerminalRun {
    tmux: Tmux,
    exit_file: PathBuf,
}

/// `run ... 2>&1 | tee run.log` typed in a terminal: stdout is a pipe, stdin the terminal.
/// The run asks, and its question counts the host already at the target apart; `n`
/// declines and no host is touched. Without a terminal on stdin the same run goes ahead.
#[test]
fn a_run_piped_to_tee_asks_first_and_counts_only_the_hosts_to_upgrade() {
    if !tmux::available() {
        println!("SKIPPED: tmux is not installed (apt-get install -y tmux)");
        return;
    }
    let fleet = Fleet::start(
        Spec::new()
            .host(HostSpec::new("p-01", "production", "v4.65.0").canary())
            .host(HostSpec::new("p-02", "production", "v4.65.0"))
            .host(HostSpec::new("p-03", "production", "v4.66.1")),
    );
    let log = fleet.tmp().join("run.log");
    let run = start_a_run_piped_to_tee(&fleet, &log);
    assert_it_asks_counting_the_host_at_the_target_apart(&run.tmux);
    decline_and_assert_no_host_was_touched(&fleet, &run, &log);
    // No terminal on stdin (cron, CI): the same command goes ahead without asking.
    assert_without_a_terminal_the_run_goes_ahead(&fleet);
}

fn start_a_run_piped_to_tee(fleet: &Fleet, log: &Path) -> TerminalRun {
    let tmp = fleet.tmp();
    let exit_file = tmp.join("exit");
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
            q(log),
            q(&exit_file),
        ),
    )
    .expect("the script is written");
    let tmux = in_terminal(tmp.join("tmux.sock"), &script, 200, 50);
    TerminalRun { tmux, exit_file }
}

fn assert_it_asks_counting_the_host_at_the_target_apart(tmux: &Tmux) {
    wait_for(
        "the question",
        || screen(tmux, false).contains("[y/N]"),
        || screen(tmux, false),
    );
    let asked = screen(tmux, false);
    assert!(
        asked.contains(
            "Upgrade 2 hosts in 2 batches (1 more is at v4.66.1 already, its steps skipped: p-03)? [y/N]"
        ),
        "{asked}"
    );
}

/// `n` ends the run with 99 before any host is upgraded, and the log says so.
fn decline_and_assert_no_host_was_touched(fleet: &Fleet, run: &TerminalRun, log: &Path) {
    let (tmux, exit_file) = (&run.tmux, &run.exit_file);
    tmux.cmd(&["send-keys", "-t", "run", "-l", "n"]);
    tmux.cmd(&["send-keys", "-t", "run", "Enter"]);
    wait_for_the_end(tmux, exit_file);
    std::thread::sleep(Duration::from_millis(200));
    let exit = std::fs::read_to_string(exit_file).unwrap_or_default();
    assert_eq!(exit.trim(), "99", "declined:\n{}", screen(tmux, false));
    let logged = std::fs::read_to_string(log).unwrap_or_default();
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
}

fn assert_without_a_terminal_the_run_goes_ahead(fleet: &Fleet) {
    let tmp = fleet.tmp();
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
    if !tmux::available() {
        println!("SKIPPED: tmux is not installed (apt-get install -y tmux)");
        return;
    }
    let fleet = Fleet::start(Spec::new().group("production", "p", 3, "v4.65.0"));
    let run = start_a_slow_run_one_host_a_batch(&fleet);
    let (tmux, exit_file) = (&run.tmux, &run.exit_file);
    wait_for(
        "batch 2",
        || screen(tmux, false).contains("batch 2 of 3"),
        || screen(tmux, false),
    );
    // The echo would wrap the last live line (`^C` after a full-width row) and shift
    // them all: whether it does depends on the moment, so the setting is checked too.
    let tty = text(
        &tmux
            .cmd(&["display-message", "-p", "-t", "run", "#{pane_tty}"])
            .stdout,
    );
    assert_eq!(
        echoctl(&tty).as_deref(),
        Some("-echoctl"),
        "while live lines are drawn"
    );
    tmux.cmd(&["send-keys", "-t", "run", "C-c"]);
    wait_for_the_end(tmux, exit_file);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        echoctl(&tty).as_deref(),
        Some("echoctl"),
        "restored at the end"
    );
    assert_halted_with_a_recap_and_no_live_line_left(&run);
}

/// Three hosts, one a batch, each taking 2 s: time to press Ctrl-C while a batch runs.
/// The script traps INT so that it, unlike fleetup, lives on to write the exit code.
fn start_a_slow_run_one_host_a_batch(fleet: &Fleet) -> TerminalRun {
    let tmp = fleet.tmp();
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
    let tmux = in_terminal(tmp.join("tmux.sock"), &script, 100, 30);
    TerminalRun { tmux, exit_file }
}

/// The terminal's `echoctl` setting as `stty -a` shows it (`echoctl` or `-echoctl`).
fn echoctl(tty: &str) -> Option<String> {
    let out = Command::new("stty")
        .args(["-a", "-F", tty.trim()])
        .output()
        .expect("stty runs");
    text(&out.stdout)
        .split_whitespace()
        .find(|w| w.ends_with("echoctl"))
        .map(str::to_string)
}

/// Exit 99, and in the scrollback the recap with no live line of the run left behind.
fn assert_halted_with_a_recap_and_no_live_line_left(run: &TerminalRun) {
    let history = screen(&run.tmux, true);
    assert_eq!(
        std::fs::read_to_string(&run.exit_file)
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
    assert_eq!(options.len(), 11, "{help}");
    for line in &options {
        let described = line.split("  ").filter(|s| !s.trim().is_empty()).count() > 1;
        assert!(described, "undocumented: {line}\n{help}");
    }
}
