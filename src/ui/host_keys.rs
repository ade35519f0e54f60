//! Host keys told once for the fleet, after the hosts: the hosts refused for keys
//! known_hosts does not record, with one command that adds them all, and the keys
//! `--host-key-checking accept-new` recorded.

use std::collections::BTreeMap;
use std::path::Path;

use crate::ssh::HostKeyReport;

/// The lines to print (none when there is nothing to say).
pub fn summary(report: &HostKeyReport) -> Vec<String> {
    let kh = report.known_hosts.display();
    let mut lines = Vec::new();
    if !report.unknown.is_empty() {
        let n = report.unknown.len();
        let hosts = if n == 1 { "host" } else { "hosts" };
        lines.push(format!(
            "{n} {hosts} refused: {} not in {kh}, so nothing ran there:",
            if n == 1 {
                "its host key is"
            } else {
                "their host keys are"
            }
        ));
        for k in &report.unknown {
            lines.push(format!("  {}  {}  {}", k.host, k.key_host, k.fingerprint));
        }
        lines.push(
            "If these are your hosts (compare the fingerprints with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on each), add them all with:"
                .into(),
        );
        lines.push(format!("  {}", keyscan_command(report)));
        lines.push("or run again with --host-key-checking accept-new to record them.".into());
    }
    if !report.learned.is_empty() {
        lines.push(format!(
            "--host-key-checking accept-new recorded {} new host {} in {kh}:",
            report.learned.len(),
            if report.learned.len() == 1 {
                "key"
            } else {
                "keys"
            }
        ));
        for k in &report.learned {
            lines.push(format!("  {}  {}  {}", k.host, k.key_host, k.fingerprint));
        }
    }
    lines
}

/// `mkdir -p -m 700 DIR && ssh-keyscan -p PORT HOST... >> FILE`, one ssh-keyscan per port.
fn keyscan_command(report: &HostKeyReport) -> String {
    let mut by_port: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for k in &report.unknown {
        let hosts = by_port.entry(k.port).or_default();
        let host = shell_words::quote(&k.hostname).into_owned();
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    let scans: Vec<String> = by_port
        .iter()
        .map(|(port, hosts)| format!("ssh-keyscan -p {port} {}", hosts.join(" ")))
        .collect();
    let scans = if scans.len() == 1 {
        scans.join("")
    } else {
        format!("{{ {}; }}", scans.join("; "))
    };
    let file = shell_words::quote(&report.known_hosts.to_string_lossy()).into_owned();
    match report.known_hosts.parent().filter(|d| *d != Path::new("")) {
        Some(dir) => format!(
            "mkdir -p -m 700 {} && {scans} >> {file}",
            shell_words::quote(&dir.to_string_lossy())
        ),
        None => format!("{scans} >> {file}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::{LearnedHostKey, UnknownHostKey};

    fn unknown(host: &str, hostname: &str, port: u16) -> UnknownHostKey {
        UnknownHostKey {
            host: host.into(),
            hostname: hostname.into(),
            port,
            key_host: if port == 22 {
                hostname.into()
            } else {
                format!("[{hostname}]:{port}")
            },
            fingerprint: format!("ssh-ed25519 SHA256:{host}"),
        }
    }

    #[test]
    fn one_message_and_one_command_for_all_unknown_hosts() {
        let report = HostKeyReport {
            known_hosts: "/home/op/.ssh/known_hosts".into(),
            unknown: vec![
                unknown("a", "10.0.0.1", 22),
                unknown("b", "10.0.0.2", 22),
                unknown("c", "10.0.0.3", 2222),
            ],
            learned: Vec::new(),
        };
        let lines = summary(&report);
        assert_eq!(lines[0], "3 hosts refused: their host keys are not in /home/op/.ssh/known_hosts, so nothing ran there:");
        assert_eq!(lines[3], "  c  [10.0.0.3]:2222  ssh-ed25519 SHA256:c");
        assert_eq!(
            lines[5],
            "  mkdir -p -m 700 /home/op/.ssh && { ssh-keyscan -p 22 10.0.0.1 10.0.0.2; ssh-keyscan -p 2222 10.0.0.3; } >> /home/op/.ssh/known_hosts"
        );
        assert_eq!(lines.len(), 7);
    }

    #[test]
    fn learned_keys_are_listed() {
        let report = HostKeyReport {
            known_hosts: "kh".into(),
            unknown: Vec::new(),
            learned: vec![LearnedHostKey {
                host: "a".into(),
                key_host: "[h]:2".into(),
                fingerprint: "ssh-ed25519 SHA256:x".into(),
            }],
        };
        assert_eq!(
            summary(&report),
            [
                "--host-key-checking accept-new recorded 1 new host key in kh:",
                "  a  [h]:2  ssh-ed25519 SHA256:x"
            ]
        );
        assert!(summary(&HostKeyReport::default()).is_empty());
    }
}
