//! A README-layout host whose operator added flags of their own to SimpleLogin's `docker
//! run` commands (limits, capabilities, a health check, a host name...) and connected sl-app
//! to a reverse proxy's network: the upgraded containers keep all of it, read back from
//! `docker inspect` as docker keeps it, and reach the proxy as before.

use super::*;

/// What an operator adds to the README's `docker run` of sl-app, each kept by docker in
/// `HostConfig` or `Config`.
const OPERATOR_FLAGS: [&str; 17] = [
    "-e",
    "EXTRA=1",
    "--memory=512m",
    "--cpus=1.5",
    "--cap-add=NET_ADMIN",
    "--add-host=db.internal:10.0.0.5",
    "--tmpfs=/run:size=64m",
    "--ulimit=nofile=1024:2048",
    "--user=1000",
    "--init",
    "--hostname=mail-app",
    "--cpu-quota=50000",
    "--stop-signal=SIGINT",
    "--network-alias=app",
    "--expose=8080",
    "--health-cmd=curl -fsS localhost:7777/health",
    "--health-interval=1s",
];

/// Each network sl-app is on, with the aliases an operator gave (not docker's short id).
fn networks(app: &Value) -> Vec<(String, Vec<String>)> {
    (app["endpoints"].as_array().expect("endpoints").iter())
        .map(|e| {
            let aliases = e["aliases"].as_array().expect("aliases").iter();
            let own = aliases.filter_map(Value::as_str).filter(|a| a.len() != 12);
            let network = e["network"].as_str().expect("a network").to_string();
            (network, own.map(str::to_string).collect())
        })
        .collect()
}

#[test]
fn a_readme_host_keeps_what_its_operator_added_to_docker_run() {
    let host = HostSpec::new("flags", "production", "v4.66.1")
        .layout("readme")
        .extra_args("sl-app", &OPERATOR_FLAGS);
    let fleet = Fleet::start(Spec::new().host(host));
    // sl-app is on a reverse proxy's network too, at a fixed address, as `docker network
    // connect` left it.
    let connect = "docker network create --subnet 172.30.0.0/16 proxy >/dev/null && \
        docker network connect --alias simplelogin --ip 172.30.0.50 proxy sl-app";
    let out = fleet.ssh("flags", connect);
    assert!(out.status.success(), "{}", fleet::stderr(&out));
    let before = fleet.state("flags");

    run_to(&fleet, "v4.67.1").assert_exit(0);

    assert_recreated_alike(&fleet, "flags", &before, "simplelogin/app-ci:v4.67.1");
    let app = container(&fleet.state("flags"), "sl-app").clone();
    assert!(env_of(&app).contains(&"EXTRA=1".into()), "{app}");
    assert_eq!(app["hostname"], "mail-app", "sl-app's own host name");
    let expected = [("sl-network", "app"), ("proxy", "simplelogin")]
        .map(|(n, a)| (n.to_string(), vec![a.to_string()]));
    assert_eq!(networks(&app), expected, "sl-app's networks and aliases");
    let proxy = (app["endpoints"].as_array().expect("endpoints").iter())
        .find(|e| e["network"] == "proxy")
        .expect("on the proxy's network");
    assert_eq!(
        proxy["fixed_ip"], "172.30.0.50",
        "its fixed address: {proxy}"
    );
}
