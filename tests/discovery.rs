//! The shipped discovery (`sl_discover_sh` in `playbooks/simplelogin-facts.yml`) run by
//! `sh` on what docker itself prints: `docker inspect` is JSON indented by 4 spaces
//! (docker/cli's `json.Indent`), which the fixtures here are written as. Two reads of an
//! unchanged host differ where docker makes them differ (the order of a container's own
//! mounts, the execs running, a healthcheck's log), and the discovery must print the same
//! bytes for both, valid JSON, with everything else as docker printed it.

use std::path::Path;
use std::process::Command;

use fleetup::template::Templates;
use serde_json::{json, Value};

/// Two reads of one unchanged host, as docker may print them.
fn sl_db(read: usize) -> Value {
    let mounts = [
        json!({"Type": "bind", "Source": "/opt/sl/db", "Destination": "/var/lib/postgresql/data",
               "Mode": "", "RW": true, "Propagation": "rprivate"}),
        json!({"Type": "volume", "Name": "pgp", "Source": "/var/lib/docker/volumes/pgp/_data",
               "Destination": "/sl/pgp", "Driver": "local", "Mode": "z", "RW": true,
               "Propagation": ""}),
        json!({"Type": "bind", "Source": "/opt/sl/.env", "Destination": "/code/.env",
               "Mode": "", "RW": false, "Propagation": "rprivate"}),
    ];
    let (mounts, exec_ids, log) = match read {
        0 => (
            vec![mounts[0].clone(), mounts[1].clone(), mounts[2].clone()],
            Value::Null,
            json!([{"Start": "2026-12-07T10:00:00Z", "End": "2026-12-07T10:00:00.1Z",
                    "ExitCode": 0, "Output": "127.0.0.1:5432 - accepting connections\n"}]),
        ),
        _ => (
            vec![mounts[2].clone(), mounts[0].clone(), mounts[1].clone()],
            json!(["9f3c0a", "77b2e1"]),
            json!([{"Start": "2026-12-07T10:00:10Z", "End": "2026-12-07T10:00:10.1Z",
                    "ExitCode": 0, "Output": "] [ {\"}\n"}]),
        ),
    };
    json!({
        "Id": "5d1f", "Name": "/sl-db",
        "State": {"Status": "running", "Running": true,
                  "Health": {"Status": "healthy", "FailingStreak": 0, "Log": log}},
        "RestartCount": 0,
        "ExecIDs": exec_ids,
        "HostConfig": {
            "Binds": ["/opt/sl/db:/var/lib/postgresql/data", "/opt/sl/.env:/code/.env:ro"],
            // What the Mount API was asked for, in its order, nested options and all.
            "Mounts": [
                {"Type": "volume", "Source": "pgp", "Target": "/sl/pgp",
                 "VolumeOptions": {"NoCopy": true, "Labels": {"a": "b"}}},
                {"Type": "tmpfs", "Target": "/run/x",
                 "TmpfsOptions": {"SizeBytes": 1_000_000, "Options": [["noexec"]]}},
            ],
        },
        "Mounts": mounts,
        "Config": {"Env": ["POSTGRES_USER=sl", "POSTGRES_PASSWORD=s3cret\"pw", "POSTGRES_DB=sl"],
                   "Labels": {}, "Healthcheck": {"Test": ["CMD-SHELL", "pg_isready"]}},
    })
}

/// A container with no mounts, no execs and no healthcheck.
fn sl_app() -> Value {
    json!({"Id": "a1b2", "Name": "/sl-app", "ExecIDs": null, "Mounts": [],
           "HostConfig": {"Binds": null, "Mounts": []},
           "Config": {"Image": "simplelogin/app-ci:v4.66.1", "Env": [], "Labels": {}}})
}

/// `value` as docker prints it.
fn docker_json(value: &Value) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    serde::Serialize::serialize(value, &mut ser).expect("JSON");
    String::from_utf8(out).expect("UTF-8") + "\n"
}

/// The shipped discovery, rendered for a host with no upgrade in progress.
fn discovery() -> String {
    let facts = Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/simplelogin-facts.yml");
    let facts: Value = serde_yaml::from_str(&std::fs::read_to_string(facts).unwrap()).unwrap();
    let vars = json!({"sl_in_progress": "/nonexistent/fleetup/in-progress"});
    let script = facts["sl_discover_sh"].as_str().expect("sl_discover_sh");
    Templates::new()
        .render(script, vars.as_object().unwrap())
        .expect("it renders")
}

/// A host whose `docker` prints what a test gives it, and the shipped discovery to run
/// there: both set up once, for every read.
struct Host {
    dir: tempfile::TempDir,
    discovery: String,
}

impl Host {
    fn new() -> Host {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let image = docker_json(&json!([{"Id": "sha256:1"}]));
        std::fs::write(dir.path().join("image.json"), image).unwrap();
        let docker = "#!/bin/sh\ncase \"$1 $2\" in\n\
                      'inspect --format') echo simplelogin/app-ci:v4.66.1 ;;\n\
                      'image inspect') cat \"$FIXTURES/image.json\" ;;\n\
                      inspect*) cat \"$FIXTURES/inspect.json\"; exit 1 ;;\n\
                      esac\n";
        let path = dir.path().join("docker");
        std::fs::write(&path, docker).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Host {
            dir,
            discovery: discovery(),
        }
    }

    /// What the discovery prints where `docker inspect` prints `containers`.
    fn discover(&self, containers: &Value) -> String {
        let dir = self.dir.path();
        std::fs::write(dir.join("inspect.json"), docker_json(containers)).unwrap();
        let out = Command::new("sh")
            .arg("-c")
            .arg(&self.discovery)
            .env("PATH", format!("{}:/usr/bin:/bin", dir.display()))
            .env("FIXTURES", dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

#[test]
fn two_reads_of_an_unchanged_host_discover_the_same_bytes_as_valid_json() {
    let host = Host::new();
    let reads: Vec<String> = (0..2)
        .map(|read| host.discover(&json!([sl_db(read), sl_app()])))
        .collect();
    assert_eq!(reads[0], reads[1], "the same host read twice");

    let found: Value = serde_json::from_str(&reads[0]).expect("valid JSON");
    let db = &found["containers"][0];
    let asked = &sl_db(0)["HostConfig"]["Mounts"];
    assert_eq!(&db["HostConfig"]["Mounts"], asked, "as docker printed it");
    let mut mounts: Vec<Value> = db["Mounts"].as_array().unwrap().clone();
    let mut expected: Vec<Value> = sl_db(0)["Mounts"].as_array().unwrap().clone();
    let key = |m: &Value| m["Destination"].to_string();
    mounts.sort_by_key(key);
    expected.sort_by_key(key);
    assert_eq!(mounts, expected, "the container's own mounts, every one");
    assert_eq!(
        db["State"]["Health"],
        json!({"Status": "healthy", "FailingStreak": 0, "Log": []})
    );
    assert!(db.get("ExecIDs").is_none(), "left out: {db}");
    assert_eq!(db["Config"]["Env"][1], "POSTGRES_PASSWORD=********");
    assert_eq!(found["containers"][1], {
        let mut app = sl_app();
        app.as_object_mut().unwrap().remove("ExecIDs");
        app
    });
    assert_eq!(found["image"], json!([{"Id": "sha256:1"}]));
}
