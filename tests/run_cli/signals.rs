//! Ctrl-C must never leave a host half-upgraded. The first one (or SIGTERM, which a service
//! manager or `kill` sends) is a request to stop: the hosts in flight finish their steps and
//! nothing new starts. Only a second Ctrl-C aborts, and then promptly and without leaving
//! commands running on the hosts. The handling lives in the process, so it is proven with
//! the built binary and real signals.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::fleet::processes_of_host;
use super::{fleet_of, playbook, run_args, sessions, spawn, strip_timestamp, strs};

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

const SLOW: &str = "\
name: slow
hosts: production
steps:
  - name: first
    shell: sleep 1
  - name: second
    shell: sleep 1
";

/// One SIGINT or SIGTERM while the first batch runs: the hosts in flight finish every step,
/// nothing else starts, the run says it is stopping, the recap names the hosts never
/// started, and the exit code is 99.
fn first_signal_lets_hosts_in_flight_finish(sig: libc::c_int) {
    let fleet = fleet_of(6, false);
    let pb = playbook(&fleet, "slow.yml", SLOW);
    // Batch 1: p-01..p-04 with 2 at once (p-03 and p-04 wait their turn); batch 2: p-05, p-06.
    let args = run_args(
        &fleet,
        &pb,
        &["--canary", "none", "--serial", "4", "--forks", "2"],
    );
    let mut run = spawn(&strs(&args));
    run.wait_for("for a started step", Duration::from_secs(20), |l| {
        l.contains("[1/2] first: started")
    });
    // Let the other host of the pair reach its first step too, if it is going to.
    std::thread::sleep(Duration::from_millis(200));
    let signalled_at = now();
    run.signal(sig);
    let out = run.finish(Duration::from_secs(20));
    let text = out.text();
    assert_eq!(out.code(), Some(99), "{}", out.context());

    let stopping = out
        .stdout
        .iter()
        .position(|l| l.contains("STOPPING: interrupted by the operator"))
        .unwrap_or_else(|| panic!("no STOPPING line\n{}", out.context()));
    // The hosts in flight are the ones announced before the signal was handled.
    let in_flight: Vec<String> = out.stdout[..stopping]
        .iter()
        .filter_map(|l| {
            let l = strip_timestamp(l);
            l.strip_suffix(": started (2 steps)").map(str::to_string)
        })
        .collect();
    assert_eq!(in_flight, ["p-01", "p-02"], "{}", out.context());
    for host in &in_flight {
        let ends: Vec<_> = sessions(&fleet, host)
            .into_iter()
            .filter(|c| c.ev == "end" && c.rc == Some(0))
            .collect();
        assert_eq!(ends.len(), 2, "{host} finished both steps: {ends:?}");
        assert!(
            ends.iter().any(|c| c.t > signalled_at),
            "{host}'s last step ended after the signal (it was not cut short)"
        );
        assert!(
            text.contains(&format!("{host}: ok (")),
            "{host} reported ok\n{text}"
        );
    }
    let never = ["p-03", "p-04", "p-05", "p-06"];
    for host in never {
        let late: Vec<_> = sessions(&fleet, host)
            .into_iter()
            .filter(|c| c.ev == "start" && c.t >= signalled_at)
            .collect();
        assert!(late.is_empty(), "{host} started after the signal: {late:?}");
        assert!(fleet.commands(host).is_empty(), "{host} was never started");
    }
    assert!(
        !text.contains("batch 2/2: started"),
        "no batch started after the signal\n{text}"
    );
    assert!(
        text.contains("run finished in")
            && text.contains("with exit code 99; 4 hosts never started"),
        "{text}"
    );
    let recap = &text[text.find("RECAP").expect("a recap")..];
    assert!(
        recap.contains("never started: p-03 p-04 p-05 p-06"),
        "{recap}"
    );
    assert!(recap.contains("2 ok, 4 not started"), "{recap}");
    assert!(
        recap.contains("halted after batch 1: interrupted by the operator"),
        "{recap}"
    );
}

#[test]
fn first_ctrl_c_lets_hosts_in_flight_finish_and_starts_nothing_new() {
    first_signal_lets_hosts_in_flight_finish(libc::SIGINT);
}

#[test]
fn sigterm_behaves_as_the_first_ctrl_c() {
    first_signal_lets_hosts_in_flight_finish(libc::SIGTERM);
}

#[test]
fn second_ctrl_c_aborts_promptly_and_leaves_no_remote_process() {
    let fleet = fleet_of(3, false);
    let pb = playbook(
        &fleet,
        "hang.yml",
        "name: hang\nhosts: production\nsteps:\n  - name: wait forever\n    shell: sleep 600\n  - name: never\n    shell: 'true'\n",
    );
    let args = run_args(&fleet, &pb, &["--canary", "none", "--forks", "3"]);
    let mut run = spawn(&strs(&args));
    // Every host's command is running on the host before the first Ctrl-C.
    let deadline = Instant::now() + Duration::from_secs(20);
    for h in fleet.hosts() {
        while !sessions(&fleet, &h.name).iter().any(|c| c.ev == "start") {
            assert!(
                Instant::now() < deadline,
                "{} never started its step",
                h.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    run.signal(libc::SIGINT);
    run.wait_for("STOPPING", Duration::from_secs(5), |l| {
        l.contains("STOPPING")
    });
    let aborted_at = Instant::now();
    run.signal(libc::SIGINT);
    let out = run.finish(Duration::from_secs(15));
    assert_eq!(out.code(), Some(99), "{}", out.context());
    assert!(
        aborted_at.elapsed() < Duration::from_secs(5) && out.waited < Duration::from_secs(5),
        "exited {:?} after the second Ctrl-C\n{}",
        out.waited,
        out.context()
    );
    let text = out.text();
    assert!(
        text.contains("ABORTING: terminating the upgrade commands in flight"),
        "{text}"
    );
    assert!(text.contains("RECAP"), "{text}");
    // The hosts' own session wrappers end their commands; give them a moment.
    let grace = Instant::now() + Duration::from_secs(5);
    for h in fleet.hosts() {
        loop {
            let left = processes_of_host(&h.host_dir);
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < grace,
                "{} still runs processes {left:?} after the abort",
                h.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = sessions(&fleet, &h.name);
        assert!(
            log.iter().any(|c| c.ev == "end" && c.signal.is_some()),
            "{}'s sleep was ended by a signal: {log:?}",
            h.name
        );
        assert!(
            // The step's command is its last line (a marker line comes first); the kill
            // sent before the marker arrives ends in `; true` and is not a step.
            !log.iter()
                .any(|c| c.cmd.lines().last() == Some("true") && c.ev == "start"),
            "{} started no further step: {log:?}",
            h.name
        );
    }
}
