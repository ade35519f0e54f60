use std::time::Duration;

use serde_json::json;

use super::*;
use crate::events::{Event, HaltReason, StepStatus};
use crate::state::sample::{at, started};

fn record(hosts: &[String]) -> RunRecord {
    serde_json::from_value(json!({
        "run_id": "r1", "started": "2026-12-05T03:00:00Z", "operator": "alice",
        "controller": "ctl", "pid": 1, "fleetup_version": "0.1.0",
        "playbook": "/x/playbooks/simplelogin-upgrade.yml", "playbook_name": "Upgrade",
        "pattern": "simplelogin", "limit": "production", "inventories": [],
        "extra_vars": {}, "redacted": [], "target": ["v4.66.1"],
        "rollout": {"serial": "1", "canary": "none", "max_fail_percentage": 0.0,
                    "order": "inventory", "forks": 10},
        "plan": [{"hosts": hosts, "canary": false, "staged": false}],
        "seed": null, "playbook_sha256": "", "hosts_sha256": {}
    }))
    .expect("a record")
}

/// `hosts` in one batch, each through `steps` steps of a second; the last host fails its
/// last step and the run halts.
fn run(hosts: &[String], steps: usize) -> Vec<Stamped> {
    let mut events = vec![
        started(0),
        at(
            0,
            Event::BatchStarted {
                batch: 1,
                of: 1,
                canary: false,
                hosts: hosts.to_vec(),
            },
        ),
    ];
    for (i, host) in hosts.iter().enumerate() {
        let last = i + 1 == hosts.len();
        for n in 1..=steps {
            let t = (n as u64) * 1000;
            let failed = last && n == steps;
            events.push(at(
                t,
                Event::StepStarted {
                    host: host.clone(),
                    step: n,
                    of: steps,
                    name: format!("step <{n}>"),
                    rollback: false,
                },
            ));
            events.push(at(
                t + 900,
                Event::StepFinished {
                    host: host.clone(),
                    step: n,
                    of: steps,
                    name: format!("step <{n}>"),
                    rollback: false,
                    status: if failed {
                        StepStatus::Failed
                    } else {
                        StepStatus::Changed
                    },
                    rc: Some(i64::from(failed)),
                    duration: Duration::from_millis(900),
                    attempts: 1,
                    message: None,
                    stderr_tail: vec!["error: <b>&\"boom\"</b>".into()],
                },
            ));
        }
        events.push(at(
            (steps as u64 + 1) * 1000,
            Event::HostFinished {
                host: host.clone(),
                outcome: if last { Outcome::Failed } else { Outcome::Ok },
                changed: true,
                changed_steps: steps,
                duration: Duration::from_secs(steps as u64),
                failed_step: None,
                message: None,
                log: "l".into(),
            },
        ));
    }
    events.push(at(
        (steps as u64 + 2) * 1000,
        Event::Halted {
            reason: HaltReason::CanaryFailed { failed: 1 },
            batch: 1,
        },
    ));
    events
}

fn sources(hosts: &[String], steps: usize) -> Sources {
    Sources {
        record: record(hosts),
        events: run(hosts, steps),
        preflight: Some("HOST  PRE-FLIGHT\n<evil>  ok\n".into()),
        before: vec![],
        after: vec![],
        logs: BTreeMap::new(),
        running: false,
    }
}

#[test]
fn everything_from_hosts_is_escaped_and_no_script_is_there() {
    let hosts = vec![
        "prod-01".to_string(),
        "<script>alert(1)</script>".to_string(),
    ];
    let mut s = sources(&hosts, 2);
    s.logs.insert(
        hosts[1].clone(),
        "=== [1/2] step\n$ echo '<img src=x onerror=alert(1)>'\n--- ok in 0.1s\n".into(),
    );
    let page = html(&s);
    assert!(
        !page.to_lowercase().contains("<script"),
        "a script tag got through"
    );
    assert!(!page.contains("<img"), "an image tag got through");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(page.contains("error: &lt;b&gt;&amp;&quot;boom&quot;&lt;/b&gt;"));
    assert!(page.contains("&lt;evil&gt;"));
    // No network: nothing is loaded from anywhere.
    for fetch in [" src=\"", " href=\"", "url(", "@import", "<link", "<iframe"] {
        assert!(!page.contains(fetch), "{fetch} in the page");
    }
}

#[test]
fn the_header_timeline_and_hosts_say_how_the_run_went() {
    let hosts: Vec<String> = (1..=3).map(|i| format!("prod-0{i}")).collect();
    let page = html(&sources(&hosts, 2));
    assert!(
        page.contains("<dt>hosts</dt><dd>simplelogin --limit production</dd>"),
        "{page}"
    );
    assert!(page.contains("<header class=\"ended-halted\">"), "{page}");
    assert!(page.contains("halted after batch 1: the canary batch failed (1 host)"));
    assert!(page
        .contains("<figure class=\"batch\" data-batch=\"1\"><figcaption>batch 1 of 1 · 3 hosts"));
    assert_eq!(page.matches("<rect class=\"changed\"").count(), 5);
    assert_eq!(page.matches("<rect class=\"failed\"").count(), 1);
    assert!(
        page.contains("<td class=\"outcome failed\">FAILED</td>"),
        "{page}"
    );
    assert!(page.contains("<line class=\"mark halt\""));
}

#[test]
fn a_thousand_hosts_make_a_page_of_a_few_megabytes() {
    let hosts: Vec<String> = (1..=1000).map(|i| format!("sl-prod-{i:04}")).collect();
    let mut s = sources(&hosts, 14);
    for h in &hosts {
        let log: String = (1..=14)
            .map(|n| {
                format!(
                    "=== [{n}/14] step\n$ run step {n}\n{}\n--- ok in 0.9s\n",
                    "output line\n".repeat(5)
                )
            })
            .collect();
        s.logs.insert(h.clone(), log);
    }
    let page = html(&s);
    let mb = page.len() as f64 / 1e6;
    assert!(mb < 8.0, "{mb:.1} MB");
    assert_eq!(page.matches("<g class=\"host\"").count(), 1000);
}
