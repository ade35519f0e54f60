//! The estimate of the time left, against the truth: a five-batch run on the test fleet
//! (a canary, then four batches of two hosts two at a time, a pause between batches),
//! read through a pipe as each line arrives. Each batch's end says how long is left; the
//! run's own end says how long it really was. Then `plan` estimates the next run from the
//! journal, and is held to the same run's length.

mod fleet;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use fleet::{Fleet, Spec};
use serde_json::Value;

const FLEETUP: &str = env!("CARGO_BIN_EXE_fleetup");
/// Within a quarter of the truth, as the issue asks; plus one second because the estimate
/// is shown in whole seconds.
const TOLERANCE: f64 = 0.25;
const SHOWN_IN_SECONDS: f64 = 1.0;

const PLAYBOOK: &str = "\
name: eta
hosts: production
rollout:
  pause_between_batches: 1s
steps:
  - name: work
    shell: sleep 2
";

/// `12s`, `1m02s`: the plain view's whole seconds.
fn seconds(shown: &str) -> Option<f64> {
    let (m, s) = match shown.split_once('m') {
        Some((m, s)) => (m.parse::<f64>().ok()?, s),
        None => (0.0, shown),
    };
    Some(m * 60.0 + s.strip_suffix('s')?.parse::<f64>().ok()?)
}

#[test]
fn the_estimate_of_a_five_batch_run_stays_within_a_quarter_of_the_truth() {
    let fleet = Fleet::start(Spec::new().group("production", "p", 9, "v4.65.0"));
    let tmp = fleet.tmp();
    let playbook = tmp.join("eta.yml");
    std::fs::write(&playbook, PLAYBOOK).expect("the playbook is written");
    let (inventory, known) = (fleet.inventory_path(), fleet.known_hosts_path());
    let state = tmp.join("state");
    let common = [
        "-i",
        inventory.to_str().unwrap_or_default(),
        playbook.to_str().unwrap_or_default(),
        "--serial",
        "2",
        "--canary",
        "1",
        "--forks",
        "2",
        "--state-dir",
        state.to_str().unwrap_or_default(),
    ];
    let run = TimedRun::start_and_read_each_line(&common, &known);
    run.assert_each_batch_estimate_within_a_quarter_of_the_truth();
    // The next run's plan reads this one's pace from the journal, pauses included.
    assert_the_plan_is_within_a_quarter_of_the_run(&common, run.took());
}

/// A successful run's stdout, each line with the instant it arrived through the pipe.
struct TimedRun {
    lines: Vec<(Instant, String)>,
    /// Every line, for the failure messages.
    all: String,
    /// When the run's last line (`run finished in`) arrived: the truth's end.
    end: Instant,
}

impl TimedRun {
    fn start_and_read_each_line(common: &[&str], known: &Path) -> TimedRun {
        let mut child = Command::new(FLEETUP)
            .arg("run")
            .args(common)
            .args(["--known-hosts", known.to_str().unwrap_or_default(), "--yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("fleetup starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines: Vec<(Instant, String)> = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .map(|l| (Instant::now(), l))
            .collect();
        let status = child.wait().expect("fleetup ends");
        let all = lines
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(status.success(), "{all}");
        let end = lines
            .iter()
            .find(|(_, l)| l.contains(" run finished in "))
            .map(|(at, _)| *at)
            .expect("the run's last line");
        TimedRun { lines, all, end }
    }

    /// Each batch's end but the last says how long is left: held to when the run ended.
    fn assert_each_batch_estimate_within_a_quarter_of_the_truth(&self) {
        let (all, end) = (&self.all, self.end);
        let mut checked = 0;
        for (at, line) in &self.lines {
            let Some(shown) = line
                .split("; about ")
                .nth(1)
                .and_then(|s| s.strip_suffix(" left"))
            else {
                continue;
            };
            let estimate = seconds(shown).expect("a duration");
            let truth = end.duration_since(*at).as_secs_f64();
            println!("{line}\n    truth {truth:.1}s, estimate {estimate}s");
            assert!(
                (estimate - truth).abs() <= truth * TOLERANCE + SHOWN_IN_SECONDS,
                "estimate {estimate}s, truth {truth:.1}s:\n{all}"
            );
            checked += 1;
        }
        assert_eq!(
            checked, 4,
            "an estimate at the end of each batch but the last:\n{all}"
        );
    }

    /// Seconds from the first line to the last.
    fn took(&self) -> f64 {
        self.lines
            .first()
            .map(|(first, _)| self.end.duration_since(*first).as_secs_f64())
            .unwrap_or_default()
    }
}

/// `plan` of the same run, as text and as JSON: its estimate against the length of the run
/// just done.
fn assert_the_plan_is_within_a_quarter_of_the_run(common: &[&str], run_took: f64) {
    let plan = |output: &str| {
        Command::new(FLEETUP)
            .arg("plan")
            .args(common)
            .args(["--output", output])
            .output()
            .expect("fleetup plan runs")
    };
    let text = String::from_utf8_lossy(&plan("text").stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.starts_with("estimate  ~"))
        .unwrap_or_else(|| panic!("no estimate in the plan:\n{text}"));
    assert!(line.contains(" in all, pauses included: "), "{line}");
    let json: Value = serde_json::from_slice(&plan("json").stdout).expect("the plan's JSON");
    let planned = json["estimate_ms"].as_f64().expect("estimate_ms") / 1000.0;
    println!("{line}\n    the run took {run_took:.1}s; planned {planned:.1}s");
    assert!(
        (planned - run_took).abs() <= run_took * TOLERANCE,
        "planned {planned:.1}s, the run took {run_took:.1}s"
    );
}
