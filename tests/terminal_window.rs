//! The start question in a real terminal when batch 1 must wait for its maintenance window:
//! `fleetup run` without `--yes` inside tmux. Asked once, before the wait ("wait for it,
//! then upgrade without asking again?"); after a yes the run counts down, starts when the
//! window opens and asks nothing more; after a no, nothing is contacted. Time is moved with
//! `FLEETUP_NOW`, a few seconds before the window opens.
//!
//! Skipped, with a message, when tmux is not installed.

mod fleet;
mod fleetup_cli;
mod tmux;

use std::path::Path;
use std::time::{Duration, Instant};

use fleet::{sh_quote, Fleet, HostSpec, Spec};
use fleetup_cli::{assert_healthy_at, s, FLEETUP, PLAYBOOK, REPO, TARGET, VARS};
use tmux::Tmux;

const WINDOW: &str = "daily 09:00-10:01 UTC";
/// Six seconds before the window opens: time to see the countdown drawn.
const NOW: &str = "2026-12-03T08:59:54Z";
const QUESTION: &str = "wait for it, then upgrade without asking again? [y/N]";
const COUNTDOWN: &str = "waiting for the maintenance window";

/// What the terminal showed, once fleetup ended.
struct Ended {
    /// Every row since the start.
    history: Vec<String>,
    exit: String,
    /// Whether the countdown was on the screen at some point after the answer: a live
    /// line, replaced when the window opens.
    counted_down: bool,
}

/// fleetup in tmux, answering the question with `answer` once it is on the screen.
fn answer_in_tmux(fleet: &Fleet, answer: &str) -> Option<Ended> {
    if !tmux::available() {
        println!("SKIPPED: tmux is not installed (apt-get install -y tmux); the start question was not tested in a real terminal");
        return None;
    }
    let tmp = fleet.tmp();
    let exit_file = tmp.join("exit");
    let mut args = vec![
        "run".to_string(),
        "-i".into(),
        s(&fleet.inventory_path()),
        Path::new(REPO).join(PLAYBOOK).display().to_string(),
    ];
    args.extend(VARS.iter().map(|v| v.to_string()));
    args.extend(["--known-hosts".into(), s(&fleet.known_hosts_path())]);
    args.extend(["--window".into(), WINDOW.into()]);
    let command: Vec<String> = std::iter::once(FLEETUP.to_string())
        .chain(args)
        .map(|a| sh_quote(&a))
        .collect();
    let script = tmp.join("run.sh");
    std::fs::write(
        &script,
        format!(
            "cd {}\nFLEETUP_NOW={NOW} {}\necho $? > {}\nexec sleep 120\n",
            sh_quote(REPO),
            command.join(" "),
            sh_quote(&s(&exit_file)),
        ),
    )
    .expect("write the script");
    let tmux = Tmux::start(tmp.join("tmux.sock"), 160, 40, &["sh", &s(&script)]);
    let deadline = Instant::now() + Duration::from_secs(90);
    let (mut answered, mut counted_down) = (false, false);
    while !exit_file.exists() {
        let screen = tmux.capture(false);
        assert!(
            Instant::now() < deadline,
            "fleetup did not end within 90 s; screen:\n{}",
            screen.join("\n")
        );
        counted_down |= answered && screen.iter().any(|l| l.contains(COUNTDOWN));
        if !answered && screen.iter().any(|l| l.contains(QUESTION)) {
            let keys = tmux.cmd(&["send-keys", "-t", "run", answer, "Enter"]);
            assert!(keys.status.success(), "tmux send-keys");
            answered = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(answered, "the question was never asked");
    // The shell writes the exit file as fleetup's last bytes may still be on their way.
    std::thread::sleep(Duration::from_millis(300));
    let exit = std::fs::read_to_string(&exit_file).expect("the exit code");
    Some(Ended {
        history: tmux.capture(true),
        exit: exit.trim().to_string(),
        counted_down,
    })
}

fn fleet() -> Fleet {
    Fleet::start(
        Spec::new()
            .host(HostSpec::new("prod-01", "production", "v4.65.0"))
            .host(HostSpec::new("prod-02", "production", "v4.65.0")),
    )
}

#[test]
fn a_yes_before_the_window_waits_for_it_then_upgrades_without_asking_again() {
    let fleet = fleet();
    let Some(ended) = answer_in_tmux(&fleet, "y") else {
        return;
    };
    let screen = ended.history.join("\n");
    assert_eq!(ended.exit, "0", "screen:\n{screen}");
    let asked = |text: &str| ended.history.iter().filter(|l| l.contains(text)).count();
    assert_eq!(asked(QUESTION), 1, "asked once:\n{screen}");
    assert_eq!(
        asked("[y/N]"),
        1,
        "no other question after the wait:\n{screen}"
    );
    assert!(ended.counted_down, "the countdown was drawn:\n{screen}");
    let question = screen.find(QUESTION).expect("the question");
    let open = screen
        .find("the maintenance window is open: starting")
        .unwrap_or_else(|| panic!("the window opens:\n{screen}"));
    let preflight = screen
        .find("pre-flight of 2 hosts")
        .unwrap_or_else(|| panic!("the pre-flight:\n{screen}"));
    assert!(question < open && open < preflight, "{screen}");
    for h in ["prod-01", "prod-02"] {
        assert_healthy_at(&fleet, h, TARGET);
    }
}

#[test]
fn a_no_before_the_window_contacts_nothing() {
    let fleet = fleet();
    let Some(ended) = answer_in_tmux(&fleet, "n") else {
        return;
    };
    let screen = ended.history.join("\n");
    // Declined: the run ends as an interruption does, before it started.
    assert_eq!(ended.exit, "99", "screen:\n{screen}");
    assert!(
        !ended.counted_down && !screen.contains(COUNTDOWN),
        "{screen}"
    );
    for h in ["prod-01", "prod-02"] {
        assert!(
            fleet.commands(h).is_empty(),
            "{h}: nothing contacted: {:?}",
            fleet.commands(h).len()
        );
    }
}
