//! `fleetup exec` runs one ad-hoc command on many hosts at once. Its output must stay
//! readable, so each host's output is printed as one block instead of lines interleaved
//! across hosts; its exit code must say when the command failed somewhere; and `--forks 1`
//! must really mean one host at a time, which only the hosts' own logs can show.

use super::fleet::Fleet;
use super::{exec_args, fleet_of, fleetup, mask_durations, sessions, strs};

#[test]
fn exec_prints_each_hosts_output_as_one_block() {
    let fleet = fleet_of(4, false);
    let kh = fleet.known_hosts_path();
    // Outputs written slowly, so that hosts running at once would interleave if printed live.
    let cmd =
        "for i in 1 2 3; do echo out-$FLEET_HOST-$i; sleep 0.25; done; echo err-$FLEET_HOST >&2";
    let out = fleetup(&strs(&exec_args(&fleet, &kh, &["--", cmd])));
    assert_eq!(out.code(), Some(0), "{}", out.context());
    let lines = &out.stdout;
    assert_eq!(lines.len(), 4 * 6 + 1, "{}", out.text());
    let mut hosts = Vec::new();
    for block in lines[..24].chunks(6) {
        let head: Vec<&str> = block[0].split(" | ").collect();
        assert_eq!(head.len(), 3, "header {:?}", block[0]);
        let host = head[0];
        assert_eq!(head[1], "rc=0", "{}", block[0]);
        assert_eq!(mask_durations(head[2]), "<T>", "{}", block[0]);
        let want = [
            format!("out-{host}-1"),
            format!("out-{host}-2"),
            format!("out-{host}-3"),
            "-- stderr --".to_string(),
            format!("err-{host}"),
        ];
        assert_eq!(&block[1..], &want, "{host}'s block\n{}", out.text());
        hosts.push(host.to_string());
    }
    hosts.sort();
    assert_eq!(hosts, ["p-01", "p-02", "p-03", "p-04"]);
    assert_eq!(lines[24], "4 hosts: 4 ok, 0 failed, 0 unreachable");
    // They did run at once (the default forks is 10).
    let spans: Vec<(f64, f64)> = fleet
        .hosts()
        .iter()
        .map(|h| busy(&fleet, &h.name))
        .collect();
    let first_end = spans.iter().map(|s| s.1).fold(f64::MAX, f64::min);
    let last_start = spans.iter().map(|s| s.0).fold(0.0, f64::max);
    assert!(last_start < first_end, "hosts overlapped: {spans:?}");
}

#[test]
fn exec_exits_2_when_the_command_fails_on_a_host() {
    let fleet = fleet_of(3, false);
    let kh = fleet.known_hosts_path();
    let cmd = "test \"$FLEET_HOST\" != p-02 || { echo no space >&2; exit 7; }";
    let out = fleetup(&strs(&exec_args(&fleet, &kh, &["--", cmd])));
    assert_eq!(out.code(), Some(2), "{}", out.context());
    let text = out.text();
    let p02 = out
        .stdout
        .iter()
        .position(|l| l.starts_with("p-02 | "))
        .expect("p-02's block");
    assert!(out.stdout[p02].starts_with("p-02 | rc=7 | "), "{text}");
    assert_eq!(out.stdout[p02 + 1..p02 + 3], ["-- stderr --", "no space"]);
    assert!(
        text.ends_with("3 hosts: 2 ok, 1 failed, 0 unreachable"),
        "{text}"
    );
}

/// When a host was busy: its first session's start to its last session's end.
fn busy(fleet: &Fleet, host: &str) -> (f64, f64) {
    let s = sessions(fleet, host);
    let start = s
        .iter()
        .filter(|c| c.ev == "start")
        .map(|c| c.t)
        .fold(f64::MAX, f64::min);
    let end = s
        .iter()
        .filter(|c| c.ev == "end")
        .map(|c| c.t)
        .fold(0.0, f64::max);
    assert!(start <= end, "{host} ran: {s:?}");
    (start, end)
}

#[test]
fn exec_forks_1_runs_one_host_at_a_time() {
    let fleet = fleet_of(3, false);
    let kh = fleet.known_hosts_path();
    let out = fleetup(&strs(&exec_args(
        &fleet,
        &kh,
        &["--forks", "1", "--", "sleep", "0.3"],
    )));
    assert_eq!(out.code(), Some(0), "{}", out.context());
    let mut spans: Vec<(f64, f64)> = fleet
        .hosts()
        .iter()
        .map(|h| busy(&fleet, &h.name))
        .collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    for w in spans.windows(2) {
        assert!(
            w[1].0 >= w[0].1,
            "a host started before the previous one ended: {spans:?}"
        );
    }
}
