//! Filters that turn `docker inspect` output back into the `docker run` that made a
//! container, so that a playbook can re-create it on another image with the same settings.
//!
//! A container's `Config.Env`, `Cmd`, `Entrypoint`, `WorkingDir` and `Labels` hold its
//! image's defaults as well as what its creator set. Re-creating it on a new image with all
//! of them would carry the old image's defaults (say its `PYTHON_VERSION`) into the new
//! one, so only what differs from the image it was created from is kept: the new image's
//! own defaults then apply, as they would for the operator's original `docker run`.

use super::host_config;
use super::networks;
use super::node::Node as Value;

/// The options of `docker run` (without `-d`, the image or the command) that re-create
/// `container` (one object of `docker inspect`) beyond the defaults of `image` (one object
/// of `docker image inspect` of the image it was created from). With `env_file`, its own
/// environment is read from that file (see [`env_file`]), not given as `-e` flags.
pub fn run_options(container: &Value, image: &Value, env_file: Option<&str>) -> Vec<String> {
    let mut args = Vec::new();
    let name = str_at(container, &["Name"]).trim_start_matches('/');
    if !name.is_empty() {
        args.extend(["--name".to_string(), name.to_string()]);
    }
    restart_policy(container, &mut args);
    let network = str_at(container, &["HostConfig", "NetworkMode"]);
    if !matches!(network, "" | "default" | "bridge") {
        args.extend(["--network".to_string(), network.to_string()]);
    }
    networks::run_flags(container, &mut args);
    published_ports(container, &mut args);
    for bind in strings_at(container, &["HostConfig", "Binds"]) {
        args.extend(["-v".to_string(), bind]);
    }
    own_env(container, image, env_file, &mut args);
    labels(container, image, &mut args);
    host_config::flags(container, image, &mut args);
    let workdir = str_at(container, &["Config", "WorkingDir"]);
    if !workdir.is_empty() && workdir != str_at(image, &["Config", "WorkingDir"]) {
        args.extend(["-w".to_string(), workdir.to_string()]);
    }
    let entrypoint = strings_at(container, &["Config", "Entrypoint"]);
    if entrypoint != strings_at(image, &["Config", "Entrypoint"]) {
        // `--entrypoint` takes one word; the rest go before the command (see run_command).
        let first = entrypoint.first().cloned().unwrap_or_default();
        args.extend(["--entrypoint".to_string(), first]);
    }
    args
}

/// The options of a one-off `docker run` (a migration) that sees what `container` sees:
/// its mounts (binds and volumes), the environment it set beyond `image` (from `env_file`
/// where given, as [`run_options`]), its network.
pub fn run_context(container: &Value, image: &Value, env_file: Option<&str>) -> Vec<String> {
    let mut args = Vec::new();
    for mount in container
        .get("Mounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let source = match mount.get("Type").and_then(Value::as_str) {
            Some("volume") => str_at(mount, &["Name"]),
            _ => str_at(mount, &["Source"]),
        };
        let target = str_at(mount, &["Destination"]);
        if source.is_empty() || target.is_empty() {
            continue;
        }
        let read_only = mount.get("RW").and_then(Value::as_bool) == Some(false);
        let suffix = if read_only { ":ro" } else { "" };
        args.extend(["-v".to_string(), format!("{source}:{target}{suffix}")]);
    }
    own_env(container, image, env_file, &mut args);
    let network = str_at(container, &["HostConfig", "NetworkMode"]);
    if !matches!(network, "" | "default") {
        args.extend(["--network".to_string(), network.to_string()]);
    }
    args
}

/// The command after the image in that `docker run`: empty when the container runs its
/// image's default command, so that the new image's default applies.
pub fn run_command(container: &Value, image: &Value) -> Vec<String> {
    let entrypoint = strings_at(container, &["Config", "Entrypoint"]);
    let cmd = strings_at(container, &["Config", "Cmd"]);
    let own_entrypoint = entrypoint != strings_at(image, &["Config", "Entrypoint"]);
    if !own_entrypoint && cmd == strings_at(image, &["Config", "Cmd"]) {
        return Vec::new();
    }
    let mut out: Vec<String> = if own_entrypoint {
        entrypoint.into_iter().skip(1).collect()
    } else {
        Vec::new()
    };
    out.extend(cmd);
    out
}

/// What `container` was created with beyond `image` that [`run_options`] would not give
/// the container it re-creates, as the flags that set it (`--mount /code/.env`): a
/// `--mount` (its options have no `-v` form), a legacy `--link`, and what
/// [`host_config::not_carried`] names. A container created with one would lose it when
/// re-created: a `--mount` of its env file, say, and with it the app.
pub fn not_carried(container: &Value, image: &Value) -> Vec<String> {
    let host = host_config::Host::of(container);
    let mut lost: Vec<String> = (host.list("Mounts"))
        .map(|m| format!("--mount {}", str_at(m, &["Target"])))
        .collect();
    if host.list("Links").next().is_some() {
        lost.push("--link".to_string());
    }
    lost.extend(host_config::not_carried(container, image));
    lost
}

/// A container's name (one object of `docker inspect`), without docker's `/`.
pub fn name(container: &Value) -> &str {
    str_at(container, &["Name"]).trim_start_matches('/')
}

/// A container's short id, the host name and network alias docker gives it by itself.
pub(super) fn short_id(container: &Value) -> &str {
    let id = str_at(container, &["Id"]);
    id.get(..12).unwrap_or(id)
}

/// The value of a container's label `key`, if it has it.
pub fn label<'c>(container: &'c Value, key: &str) -> Option<&'c Value> {
    container.pointer("/Config/Labels")?.get(key)
}

/// Where a container port is published on the host (`127.0.0.1:7777`), if it is.
pub fn published(container: &Value, port: &str) -> Option<String> {
    let key = if port.contains('/') {
        port.to_string()
    } else {
        format!("{port}/tcp")
    };
    let bindings = container
        .pointer(&format!(
            "/HostConfig/PortBindings/{}",
            key.replace('/', "~1")
        ))?
        .as_array()?;
    let first = bindings.first()?;
    let host_port = first.get("HostPort")?.as_str().filter(|p| !p.is_empty())?;
    let ip = first
        .get("HostIp")
        .and_then(Value::as_str)
        .filter(|ip| !ip.is_empty() && *ip != "0.0.0.0" && *ip != "::")
        .unwrap_or("127.0.0.1");
    Some(format!("{ip}:{host_port}"))
}

/// The variables `container` set beyond its image's own environment, as `-e` flags, or
/// as `--env-file` where a file holds them: a value given by `-e` is in the command, and
/// so in every log of it, where an operator's `-e DB_URI=...` with its password would be.
fn own_env(container: &Value, image: &Value, file: Option<&str>, args: &mut Vec<String>) {
    let (filed, given): (Vec<String>, Vec<String>) = own_variables(container, image)
        .into_iter()
        .partition(|entry| file.is_some() && fits_env_file(entry));
    if let (Some(file), false) = (file, filed.is_empty()) {
        args.extend(["--env-file".to_string(), file.to_string()]);
    }
    for entry in given {
        args.extend(["-e".to_string(), entry]);
    }
}

/// The lines of the env file that [`run_options`] and [`run_context`] read `container`'s
/// own environment from: each `NAME=value` that such a file can hold.
pub fn env_file(container: &Value, image: &Value) -> Vec<String> {
    let mut own = own_variables(container, image);
    own.retain(|entry| fits_env_file(entry));
    own
}

fn own_variables(container: &Value, image: &Value) -> Vec<String> {
    let image_env = strings_at(image, &["Config", "Env"]);
    let mut own = strings_at(container, &["Config", "Env"]);
    own.retain(|entry| !image_env.contains(entry));
    own
}

/// Whether docker's `--env-file` reads `entry` back as it is (docker/cli's `kvfile`): a
/// file is read in lines of under 64 KiB, a line's leading spaces dropped, one starting
/// with `#` skipped, and a name with a space refused. Any other stays a `-e` flag.
fn fits_env_file(entry: &str) -> bool {
    let name = entry.split('=').next().unwrap_or_default();
    entry.len() < (64 << 10) - 1
        && !entry.contains(['\n', '\r'])
        && !name.is_empty()
        && !name.starts_with('#')
        && !name.contains(char::is_whitespace)
}

fn restart_policy(container: &Value, args: &mut Vec<String>) {
    let policy = str_at(container, &["HostConfig", "RestartPolicy", "Name"]);
    let retries = container
        .pointer("/HostConfig/RestartPolicy/MaximumRetryCount")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    match policy {
        "" | "no" => {}
        "on-failure" if retries > 0 => {
            args.extend(["--restart".to_string(), format!("on-failure:{retries}")])
        }
        other => args.extend(["--restart".to_string(), other.to_string()]),
    }
}

fn published_ports(container: &Value, args: &mut Vec<String>) {
    let Some(bindings) = container
        .pointer("/HostConfig/PortBindings")
        .and_then(Value::as_object)
    else {
        return;
    };
    for (container_port, hosts) in bindings.iter() {
        // docker writes `7777/tcp`; `-p` takes the protocol only when it is not tcp.
        let port = container_port
            .strip_suffix("/tcp")
            .unwrap_or(container_port);
        for host in hosts.as_array().into_iter().flatten() {
            let ip = host.get("HostIp").and_then(Value::as_str).unwrap_or("");
            let host_port = host.get("HostPort").and_then(Value::as_str).unwrap_or("");
            let spec = match (ip, host_port) {
                ("", "") => port.to_string(),
                ("", hp) => format!("{hp}:{port}"),
                (ip, hp) => format!("{ip}:{hp}:{port}"),
            };
            args.extend(["-p".to_string(), spec]);
        }
    }
}

fn labels(container: &Value, image: &Value, args: &mut Vec<String>) {
    let Some(own) = container
        .pointer("/Config/Labels")
        .and_then(Value::as_object)
    else {
        return;
    };
    let inherited = image.pointer("/Config/Labels").and_then(Value::as_object);
    for (key, value) in own.iter() {
        if inherited.and_then(|l| l.get(key)) == Some(value) {
            continue;
        }
        let value = value.as_str().unwrap_or_default();
        args.extend(["-l".to_string(), format!("{key}={value}")]);
    }
}

/// The string at `path`, or "" where there is none.
pub(super) fn str_at<'v>(value: &'v Value, path: &[&str]) -> &'v str {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// A list of strings at `path`; docker writes `null` for an empty one.
fn strings_at(value: &Value, path: &[&str]) -> Vec<String> {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value as J};

    use super::Value as Node;

    // The filters read a parsed document; the cases are written as serde_json's values.
    fn run_options(c: &J, i: &J) -> Vec<String> {
        super::run_options(&Node::from(c), &Node::from(i), None)
    }

    fn run_context(c: &J, i: &J) -> Vec<String> {
        super::run_context(&Node::from(c), &Node::from(i), None)
    }

    fn run_command(c: &J, i: &J) -> Vec<String> {
        super::run_command(&Node::from(c), &Node::from(i))
    }

    fn name(c: &J) -> String {
        super::name(&Node::from(c)).to_string()
    }

    fn label(c: &J, key: &str) -> Option<J> {
        super::label(&Node::from(c), key).map(|v| serde_json::to_value(v).unwrap())
    }

    fn published(c: &J, port: &str) -> Option<String> {
        super::published(&Node::from(c), port)
    }

    fn not_carried(c: &J) -> Vec<String> {
        super::not_carried(&Node::from(c), &Node::from(&app_image()))
    }

    /// `docker image inspect simplelogin/app-ci:v4.66.1`, the parts that matter.
    fn app_image() -> J {
        json!({"Config": {
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "PYTHON_VERSION=3.10.13", "LANG=C.UTF-8"],
            "Cmd": ["gunicorn", "wsgi:app", "-b", "0.0.0.0:7777"],
            "Entrypoint": null, "WorkingDir": "/code",
            "Labels": {"org.opencontainers.image.source": "https://github.com/simple-login/app"}
        }})
    }

    /// sl-email as the README's `docker run` made it.
    fn readme_sl_email() -> J {
        json!({
            "Name": "/sl-email",
            "Config": {
                "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "PYTHON_VERSION=3.10.13", "LANG=C.UTF-8", "EXTRA=1"],
                "Cmd": ["python", "email_handler.py"], "Entrypoint": null, "WorkingDir": "/code",
                "Labels": {"org.opencontainers.image.source": "https://github.com/simple-login/app", "owner": "ops"}
            },
            "HostConfig": {
                "Binds": ["/root/sl:/sl", "/root/simplelogin.env:/code/.env"],
                "NetworkMode": "sl-network",
                "PortBindings": {"20381/tcp": [{"HostIp": "127.0.0.1", "HostPort": "20381"}]},
                "RestartPolicy": {"Name": "always", "MaximumRetryCount": 0}
            }
        })
    }

    #[test]
    fn a_readme_container_is_re_created_with_its_own_flags_and_not_its_images_defaults() {
        let args = run_options(&readme_sl_email(), &app_image());
        assert_eq!(
            args,
            [
                "--name",
                "sl-email",
                "--restart",
                "always",
                "--network",
                "sl-network",
                "-p",
                "127.0.0.1:20381:20381",
                "-v",
                "/root/sl:/sl",
                "-v",
                "/root/simplelogin.env:/code/.env",
                "-e",
                "EXTRA=1",
                "-l",
                "owner=ops"
            ]
        );
        assert_eq!(
            run_command(&readme_sl_email(), &app_image()),
            ["python", "email_handler.py"]
        );
    }

    #[test]
    fn the_images_default_command_is_left_to_the_new_image() {
        let mut app = readme_sl_email();
        app["Config"]["Cmd"] = json!(["gunicorn", "wsgi:app", "-b", "0.0.0.0:7777"]);
        assert!(run_command(&app, &app_image()).is_empty());
    }

    #[test]
    fn an_own_entrypoint_is_kept_with_its_arguments_before_the_command() {
        let mut c = readme_sl_email();
        c["Config"]["Entrypoint"] = json!(["/bin/sh", "-c"]);
        c["Config"]["Cmd"] = json!(["python email_handler.py"]);
        let options = run_options(&c, &app_image());
        assert!(options.ends_with(&["--entrypoint".to_string(), "/bin/sh".to_string()]));
        assert_eq!(
            run_command(&c, &app_image()),
            ["-c", "python email_handler.py"]
        );
    }

    #[test]
    fn ports_restart_policies_and_networks_in_each_form() {
        let c = json!({"Name": "/x", "HostConfig": {
            "NetworkMode": "default",
            "PortBindings": {"53/udp": [{"HostIp": "", "HostPort": "5353"}], "80/tcp": [{"HostIp": "", "HostPort": ""}]},
            "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}
        }});
        let args = run_options(&c, &json!({}));
        assert_eq!(
            args,
            [
                "--name",
                "x",
                "--restart",
                "on-failure:3",
                "-p",
                "5353:53/udp",
                "-p",
                "80"
            ]
        );
    }

    #[test]
    fn a_one_off_container_sees_the_apps_mounts_env_and_network() {
        let mut c = readme_sl_email();
        c["Mounts"] = json!([
            {"Type": "bind", "Source": "/root/sl", "Destination": "/sl", "RW": true},
            {"Type": "volume", "Name": "sl_pgp", "Source": "/var/lib/docker/volumes/sl_pgp/_data", "Destination": "/sl/pgp", "RW": true},
            {"Type": "bind", "Source": "/root/dkim.key", "Destination": "/dkim.key", "RW": false}
        ]);
        assert_eq!(
            run_context(&c, &app_image()),
            [
                "-v",
                "/root/sl:/sl",
                "-v",
                "sl_pgp:/sl/pgp",
                "-v",
                "/root/dkim.key:/dkim.key:ro",
                "-e",
                "EXTRA=1",
                "--network",
                "sl-network"
            ]
        );
    }

    #[test]
    fn a_container_s_name_and_labels() {
        let app = json!({"Name": "/sl-app", "Config": {"Labels": {"svc": "app"}}});
        assert_eq!(name(&app), "sl-app");
        assert_eq!(name(&json!({})), "");
        assert_eq!(label(&app, "svc"), Some(json!("app")));
        assert_eq!(label(&app, "other"), None);
        assert_eq!(label(&json!({"Config": {"Labels": null}}), "svc"), None);
    }

    #[test]
    fn published_says_where_a_port_is_reached_from_the_host() {
        assert_eq!(
            published(&readme_sl_email(), "20381").as_deref(),
            Some("127.0.0.1:20381")
        );
        assert_eq!(published(&readme_sl_email(), "7777"), None);
        let all = json!({"HostConfig": {"PortBindings": {"7777/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}}});
        assert_eq!(published(&all, "7777").as_deref(), Some("127.0.0.1:8080"));
    }

    #[test]
    fn what_re_creating_would_lose_is_named_by_its_flag() {
        assert_eq!(not_carried(&readme_sl_email()), Vec::<String>::new());
        let mut c = readme_sl_email();
        let host = c["HostConfig"].as_object_mut().unwrap();
        host.insert(
            "Mounts".into(),
            json!([{"Type": "bind", "Source": "/root/sl.env", "Target": "/code/.env"}]),
        );
        host.insert("Links".into(), json!(["/sl-db:/sl-app/db"]));
        host.insert("Memory".into(), json!(536870912));
        host.insert("CapAdd".into(), json!(["CAP_NET_ADMIN"]));
        assert_eq!(not_carried(&c), ["--mount /code/.env", "--link"]);
    }

    #[test]
    fn a_readme_container_keeps_its_limits_and_capabilities_before_its_entrypoint() {
        let mut c = readme_sl_email();
        c["HostConfig"]["Memory"] = json!(536870912);
        c["HostConfig"]["CapAdd"] = json!(["CAP_NET_ADMIN"]);
        c["Config"]["Entrypoint"] = json!(["/bin/sh", "-c"]);
        let options = run_options(&c, &app_image());
        let tail: Vec<&str> = options[options.len() - 6..]
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(
            tail,
            [
                "--cap-add",
                "CAP_NET_ADMIN",
                "--memory",
                "536870912",
                "--entrypoint",
                "/bin/sh"
            ]
        );
    }

    #[test]
    fn an_env_file_holds_the_own_variables_it_can_and_the_command_names_only_the_file() {
        let mut c = readme_sl_email();
        let env = c["Config"]["Env"].as_array_mut().unwrap();
        env.push(json!(
            "DB_URI=postgresql://sl:s3cret@sl-db:5432/simplelogin"
        ));
        env.push(json!("MOTD=line one\nline two"));
        let (c, file) = (
            Node::from(&c),
            Some("/var/lib/fleetup/upgrade-in-progress/sl-email.env"),
        );
        let image = Node::from(&app_image());
        assert_eq!(
            super::env_file(&c, &image),
            [
                "EXTRA=1",
                "DB_URI=postgresql://sl:s3cret@sl-db:5432/simplelogin"
            ]
        );
        let options = super::run_options(&c, &image, file);
        let env_flags: Vec<&str> = (options.windows(2))
            .filter(|w| w[0] == "-e" || w[0] == "--env-file")
            .flat_map(|w| [w[0].as_str(), w[1].as_str()])
            .collect();
        let expected = [
            "--env-file",
            "/var/lib/fleetup/upgrade-in-progress/sl-email.env",
            "-e",
            "MOTD=line one\nline two",
        ];
        assert_eq!(env_flags, expected);
        assert!(super::run_context(&c, &image, file).ends_with(&[
            "-e".to_string(),
            "MOTD=line one\nline two".to_string(),
            "--network".to_string(),
            "sl-network".to_string()
        ]));
        assert!(!options.join(" ").contains("s3cret"));
    }

    #[test]
    fn what_an_env_file_cannot_hold_stays_a_flag() {
        for entry in ["A=1\n2", "A=1\r", "#A=1", "A B=1", "=1"] {
            assert!(!super::fits_env_file(entry), "{entry:?}");
        }
        assert!(!super::fits_env_file(&format!(
            "A={}",
            "x".repeat(64 << 10)
        )));
        for entry in ["A=", "A= spaced ", "A=#1", "A=\"quoted\""] {
            assert!(super::fits_env_file(entry), "{entry:?}");
        }
    }
}
