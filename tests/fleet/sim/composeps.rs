//! `docker compose ps`: the project's containers, with compose's columns and states (a
//! crash-looping container shows as restarting).

use crate::composefile::{Project, Service};
use crate::format::{print_list, tabulate};
use crate::opts;
use crate::state;
use crate::util::{self, human_ago};
use serde_json::json;
use std::path::Path;

pub fn ps(h: &Path, proj: &Project, selected: &[&Service], o: &opts::Opts) -> Result<i32, String> {
    let st = state::load(h)?;
    if o.has(&["--services"]) {
        for s in selected {
            println!("{}", s.name);
        }
        return Ok(0);
    }
    let all = o.has(&["-a", "--all"]);
    let now = util::now();
    let mut rows = Vec::new();
    for s in selected {
        let Some(c) = st.container(&s.container) else {
            continue;
        };
        if c.project() != Some(proj.name.as_str()) || (!all && c.status != "running") {
            continue;
        }
        let crashing = st.crashing(c);
        let (state_s, status_s) = match (c.status.as_str(), crashing) {
            ("running", true) => (
                "restarting",
                "Restarting (1) Less than a second ago".to_string(),
            ),
            ("running", false) => ("running", format!("Up {}", human_ago(now - c.started))),
            ("exited", _) => (
                "exited",
                format!(
                    "Exited ({}) {} ago",
                    c.exit_code,
                    human_ago(now - c.finished)
                ),
            ),
            _ => ("created", "Created".to_string()),
        };
        rows.push(json!({
            "ID": &c.id[..12], "Name": c.name, "Names": c.name, "Image": c.image, "Service": s.name,
            "Command": format!("\"{}\"", c.cmd.join(" ")), "Project": proj.name,
            "CreatedAt": util::rfc3339(c.created), "RunningFor": format!("{} ago", human_ago(now - c.created)),
            "State": state_s, "Status": status_s, "Ports": c.ports.iter().map(|p| format!("{}:{}->{}", if p.host_ip.is_empty() { "0.0.0.0" } else { &p.host_ip }, p.host_port, p.container)).collect::<Vec<_>>().join(", "), "Health": "", "ExitCode": c.exit_code,
        }));
    }
    if o.has(&["-q", "--quiet"]) {
        for r in &rows {
            println!("{}", r["ID"].as_str().unwrap_or(""));
        }
        return Ok(0);
    }
    match o.get(&["--format"]).as_deref() {
        Some("json") => {
            println!("{}", serde_json::Value::Array(rows));
            Ok(0)
        }
        Some(f) => Ok(print_list(f, &rows)),
        None => {
            let keys = [
                "Name",
                "Image",
                "Command",
                "Service",
                "RunningFor",
                "Status",
                "Ports",
            ];
            let mut lines = vec![[
                "NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()];
            for r in &rows {
                lines.push(
                    keys.iter()
                        .map(|k| r[*k].as_str().unwrap_or("").to_string())
                        .collect(),
                );
            }
            print!("{}", tabulate(&lines));
            Ok(0)
        }
    }
}
