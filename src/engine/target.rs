//! How to reach a host, from its inventory variables (Ansible's connection variables).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::inventory::parse_port;
use crate::transport::{ConnectTarget, ConnectionKind};
use crate::vars::Lookup;

/// The connection target of a host, and a warning for anything given that fleetup ignores.
pub fn connect_target(
    name: &str,
    vars: &dyn Lookup,
    connect_timeout: Duration,
) -> (ConnectTarget, Option<String>) {
    let text = |key: &str| vars.get(key).and_then(Value::as_str).map(str::to_string);
    let kind = match text("ansible_connection").as_deref() {
        Some("local") => ConnectionKind::Local,
        _ => ConnectionKind::Ssh,
    };
    let (jump, warning) = match text("ansible_ssh_common_args") {
        Some(args) => proxy_jump_from_args(name, &args),
        None => (None, None),
    };
    let target = ConnectTarget {
        name: name.to_string(),
        kind,
        address: text("ansible_host"),
        port: vars.get("ansible_port").and_then(parse_port),
        user: text("ansible_user"),
        identity_file: text("ansible_ssh_private_key_file").map(PathBuf::from),
        proxy_jump: text("proxy_jump").or(jump),
        connect_timeout: Some(connect_timeout),
    };
    (target, warning)
}

/// Of `ansible_ssh_common_args`, only a jump host (`-J host` or `-o ProxyJump=host`) means
/// something to fleetup; the rest is named in a warning rather than silently dropped.
fn proxy_jump_from_args(host: &str, args: &str) -> (Option<String>, Option<String>) {
    let Ok(words) = shell_words::split(args) else {
        return (
            None,
            Some(format!(
                "{host}: ansible_ssh_common_args cannot be parsed; ignored"
            )),
        );
    };
    let mut jump = None;
    let mut ignored = Vec::new();
    let mut words = words.into_iter();
    while let Some(word) = words.next() {
        let option = if word == "-o" {
            words.next()
        } else {
            word.strip_prefix("-o").map(str::to_string)
        };
        if word == "-J" {
            jump = words.next();
        } else if let Some(j) = word.strip_prefix("-J").filter(|j| !j.is_empty()) {
            jump = Some(j.to_string());
        } else if let Some(opt) = option {
            match opt.split_once(['=', ' ']) {
                Some((k, v)) if k.eq_ignore_ascii_case("ProxyJump") => {
                    jump = Some(v.trim().to_string())
                }
                _ => ignored.push(format!("-o {opt}")),
            }
        } else {
            ignored.push(word);
        }
    }
    let warning = (!ignored.is_empty()).then(|| {
        format!(
            "{host}: ansible_ssh_common_args: fleetup uses only -J (ProxyJump); ignored: {}",
            ignored.join(" ")
        )
    });
    (jump, warning)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn connection_variables() {
        let vars = json!({
            "ansible_host": "10.1.2.3", "ansible_port": "2222", "ansible_user": "deploy",
            "ansible_ssh_private_key_file": "/k", "ansible_ssh_common_args": "-J jump@bastion -o Compression=yes",
        });
        let (t, warning) = connect_target("web", vars.as_object().unwrap(), Duration::from_secs(3));
        assert_eq!(t.address.as_deref(), Some("10.1.2.3"));
        assert_eq!(t.port, Some(2222));
        assert_eq!(t.user.as_deref(), Some("deploy"));
        assert_eq!(t.identity_file, Some(PathBuf::from("/k")));
        assert_eq!(t.proxy_jump.as_deref(), Some("jump@bastion"));
        assert_eq!(t.kind, ConnectionKind::Ssh);
        assert_eq!(
            warning.as_deref(),
            Some("web: ansible_ssh_common_args: fleetup uses only -J (ProxyJump); ignored: -o Compression=yes")
        );
    }

    #[test]
    fn proxy_jump_forms_and_local() {
        assert_eq!(
            proxy_jump_from_args("h", "-o ProxyJump=b:2200")
                .0
                .as_deref(),
            Some("b:2200")
        );
        assert_eq!(proxy_jump_from_args("h", "-Jb").0.as_deref(), Some("b"));
        let vars = json!({"ansible_connection": "local", "proxy_jump": "x"});
        let (t, w) = connect_target("h", vars.as_object().unwrap(), Duration::from_secs(1));
        assert_eq!(t.kind, ConnectionKind::Local);
        assert_eq!(t.proxy_jump.as_deref(), Some("x"));
        assert!(w.is_none());
    }
}
