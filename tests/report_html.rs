//! The HTML report of a run that halted on a rolled-back host and was resumed, rendered by
//! headless Chromium (Debian's `chromium`, installed by `.ci/run`): the page a reviewer
//! opens the next morning must show the hosts, the batches, each attempt and how each
//! host ended, with no script error. `FLEETUP_UPDATE_SCREENSHOT=1` also writes the
//! screenshot the README shows (docs/report.png).

mod fleet;
mod fleetup_cli;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fleet::{Fleet, Spec};
use serde_json::json;

const PLAYBOOK: &str = r#"
name: report demo
hosts: production
secrets: [api_token]
vars:
  api_token: s3cr3t-report-value
report:
  version: "{{ found.stdout }}"
  token: "{{ api_token }}"
audit:
  from: "{{ found.stdout }}"
  to: v4.66.1
preflight:
  - name: read the version
    register: found
    shell: cat "$FLEET_HOST_DIR/demo-version" 2>/dev/null || echo v4.65.0
steps:
  - name: pull the new image
    shell: echo pulled with {{ api_token }}; sleep 0.3
  - name: stop the app
    point_of_no_return: true
    shell: echo stopped; sleep 0.2
  - name: migrate the database
    shell: echo migrate-db; sleep 0.3
  - name: start the app
    shell: "echo v4.66.1 > \"$FLEET_HOST_DIR/demo-version\"; echo 'started <b>&amp;</b>'"
rollback:
  - name: restore the database
    shell: echo restored; sleep 0.2
"#;

fn fleetup(args: &[&str]) -> Output {
    fleetup_cli::cli(&fleetup_cli::strings(args))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn chromium_available() -> bool {
    Command::new("chromium")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Headless Chromium on `page`: what it prints and logs (its console included).
fn chromium(page: &Path, extra: &[&str]) -> Output {
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,1400",
        ])
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs")
}

#[test]
fn the_report_of_a_halted_and_resumed_run_renders_in_chromium() {
    if !chromium_available() {
        println!("SKIPPED: chromium is not installed (apt-get install -y chromium)");
        return;
    }
    let fleet = Fleet::start(Spec::new().group("production", "p", 3, "v4.65.0"));
    fleet.fault(
        "p-02",
        json!({"match": "migrate-db", "action": "fail", "times": 1,
               "stderr": "ERROR: relation \"alias\" already exists"}),
    );
    let tmp = fleet.tmp();
    let reports = halt_then_resume_with_a_live_report(&fleet);
    let report = tmp.join("report.html");
    assert_show_writes_the_live_report_redacted(&reports, &report);
    assert_chromium_shows_every_host_batch_and_attempt(&report);
    assert_the_screenshot_is_a_png(tmp, &report);
}

/// Where the runs keep their journal and the report they rewrite as they go.
struct Reports {
    state: PathBuf,
    live: PathBuf,
}

/// A path as `fleetup` takes it on its command line.
fn path_arg(p: &Path) -> String {
    p.to_str().unwrap_or_default().to_string()
}

/// The first run halts after p-02 rolls back (exit 2), the live report already says so,
/// and `--resume last` finishes the fleet.
fn halt_then_resume_with_a_live_report(fleet: &Fleet) -> Reports {
    let tmp = fleet.tmp();
    let playbook = tmp.join("demo.yml");
    std::fs::write(&playbook, PLAYBOOK).expect("the playbook is written");
    let (inventory, known) = (fleet.inventory_path(), fleet.known_hosts_path());
    let state = tmp.join("state");
    let live = tmp.join("live.html");
    let common = [
        "-i".to_string(),
        path_arg(&inventory),
        "--known-hosts".into(),
        path_arg(&known),
        "--state-dir".into(),
        path_arg(&state),
        "--yes".into(),
        "--html-report".into(),
        path_arg(&live),
    ];
    let common: Vec<&str> = common.iter().map(String::as_str).collect();
    let first = fleetup(
        &[
            &[
                "run",
                &path_arg(&playbook),
                "--serial",
                "1",
                "--canary",
                "1",
            ][..],
            &common,
        ]
        .concat(),
    );
    assert_eq!(first.status.code(), Some(2), "{}", text(&first.stdout));
    let halted = std::fs::read_to_string(&live).expect("the live report");
    assert!(
        halted.contains("halted after batch 2"),
        "live report after the halt:\n{}\n{halted}",
        text(&first.stdout)
    );
    let resumed = fleetup(&[&["run", "--resume", "last"][..], &common].concat());
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed.stdout));
    Reports { state, live }
}

/// `show last --html` writes the same page the live report ended on, with the secret
/// redacted.
fn assert_show_writes_the_live_report_redacted(reports: &Reports, report: &Path) {
    let shown = fleetup(&[
        "show",
        "last",
        "--state-dir",
        &path_arg(&reports.state),
        "--html",
        "-o",
        &path_arg(report),
    ]);
    assert_eq!(shown.status.code(), Some(0), "{}", text(&shown.stderr));
    let page = std::fs::read_to_string(report).expect("the report");
    assert_eq!(
        page,
        std::fs::read_to_string(&reports.live).expect("the live report"),
        "the live report's last version is the journal's"
    );
    println!("report: {} bytes", page.len());
    assert!(
        !page.contains("s3cr3t-report-value"),
        "a secret in the report"
    );
    assert!(
        page.contains("pulled with ********"),
        "the step's output, redacted"
    );
}

/// The page as Chromium builds it: the hosts, the batches, each attempt and how each host
/// ended, with no script error in its console.
fn assert_chromium_shows_every_host_batch_and_attempt(report: &Path) {
    let rendered = chromium(report, &["--dump-dom"]);
    let dom = text(&rendered.stdout);
    let log = text(&rendered.stderr);
    assert!(rendered.status.success(), "{log}");
    for seen in [
        "p-01",
        "p-02",
        "p-03",
        "batch 1 of 3 (canary)",
        "batch 2 of 3",
        "batch 3 of 3",
        "Attempt 1",
        "Attempt 2",
        "halted after batch 2: 1 of 1 host of the batch failed or was unreachable",
        "ROLLED BACK",
        "[rollback 1/1] restore the database",
        "ERROR: relation \"alias\" already exists",
        "started &lt;b&gt;&amp;amp;&lt;/b&gt;",
        "<th>version before</th><th>version after</th>",
        // Before the run and after it: the upgraded hosts read the new version.
        "<td>v4.65.0</td><td>v4.66.1</td>",
        "<td>p-01</td><td class=\"outcome ok\">ok</td><td>v4.65.0</td>",
        "completed (exit 0), 2 attempts",
        "<dt>target</dt><dd>v4.66.1</dd>",
    ] {
        assert!(dom.contains(seen), "{seen:?} is not on the page:\n{dom}");
    }
    assert!(dom.contains("class=\"rolledback\""), "a rollback bar");
    assert!(dom.contains("class=\"failed\""), "a failed bar");
    assert!(dom.contains("class=\"mark halt\""), "the halt on the axis");
    for error in ["Uncaught", "SyntaxError", "ReferenceError"] {
        assert!(!log.contains(error), "a script error: {log}");
    }
}

/// `FLEETUP_UPDATE_SCREENSHOT` copies it to docs/report.png, the one the README shows.
fn assert_the_screenshot_is_a_png(tmp: &Path, report: &Path) {
    let shot = tmp.join("report.png");
    let taken = chromium(report, &[&format!("--screenshot={}", shot.display())]);
    assert!(taken.status.success(), "{}", text(&taken.stderr));
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a PNG");
    if std::env::var_os("FLEETUP_UPDATE_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&docs).expect("docs/");
        std::fs::write(docs.join("report.png"), &png).expect("docs/report.png");
    }
}
