//! Strict host key checking is what stands between fleetup and a spoofed host, so a host
//! whose key is not in known_hosts must be refused before anything runs there, through
//! `exec` and `run` alike, and the message must tell the operator how to get the key
//! (ssh-keyscan).

use super::{
    exec_args, fleet_of, fleetup, playbook, run_args, s, strip_timestamp, strs, TWO_STEPS,
};

#[test]
fn an_unknown_host_key_is_refused_and_nothing_runs_there() {
    let fleet = fleet_of(3, false);
    let port = fleet.port("p-02");
    let all = std::fs::read_to_string(fleet.known_hosts_path()).unwrap();
    let without: String = all
        .lines()
        .filter(|l| !l.starts_with(&format!("[127.0.0.1]:{port} ")))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(without.len() < all.len(), "p-02's key was in known_hosts");
    let kh = fleet.tmp().join("known_hosts_without_p02");
    std::fs::write(&kh, without).unwrap();

    let out = fleetup(&strs(&exec_args(&fleet, &kh, &["--", "echo", "hi"])));
    assert_eq!(out.code(), Some(4), "{}", out.context());
    let p02 = out
        .stdout
        .iter()
        .find(|l| l.starts_with("p-02 | "))
        .unwrap_or_else(|| panic!("p-02's block\n{}", out.context()));
    assert!(
        p02.contains("error: ") && p02.contains("ssh-keyscan"),
        "{p02}"
    );
    assert!(p02.contains(&format!("-p {port}")), "{p02}");
    assert!(fleet.commands("p-02").is_empty(), "nothing ran on p-02");
    assert!(!fleet.commands("p-01").is_empty());

    // The same through `run`: the host is unreachable, the message names ssh-keyscan.
    let pb = playbook(&fleet, "two.yml", TWO_STEPS);
    let mut args = run_args(
        &fleet,
        &pb,
        &["--canary", "none", "--max-fail-percentage", "50"],
    );
    let k = args.iter().position(|a| a == "--known-hosts").unwrap();
    args[k + 1] = s(&kh).to_string();
    let out = fleetup(&strs(&args));
    assert_eq!(out.code(), Some(4), "{}", out.context());
    let line = out
        .stdout
        .iter()
        .find(|l| strip_timestamp(l).starts_with("p-02: UNREACHABLE"))
        .unwrap_or_else(|| panic!("p-02 unreachable\n{}", out.context()));
    assert!(line.contains("ssh-keyscan"), "{line}");
    assert!(fleet.commands("p-02").is_empty(), "nothing ran on p-02");
}
