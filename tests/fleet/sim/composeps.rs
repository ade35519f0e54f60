//! `docker compose ps`: the project's containers, with compose's columns and states (a
//! crash-looping container shows as restarting).

use crate::composefile::{Project, Service};
use crate::format::{print_ps, JsonRows};
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
        let state_s = crate::inspect::view(&st, c).status;
        let status_s = crate::docker::status_text(&st, c);
        let health = crate::inspect::health(&st, c).map_or("", |h| h.word());
        rows.push(json!({
            "ID": &c.id[..12], "Name": c.name, "Names": c.name, "Image": c.image, "Service": s.name,
            "Command": format!("\"{}\"", c.cmd.join(" ")), "Project": proj.name,
            "CreatedAt": util::rfc3339(c.created), "RunningFor": format!("{} ago", human_ago(now - c.created)),
            "State": state_s, "Status": status_s, "Ports": c.ports.iter().map(|p| format!("{}:{}->{}", if p.host_ip.is_empty() { "0.0.0.0" } else { &p.host_ip }, p.host_port, p.container)).collect::<Vec<_>>().join(", "), "Health": health, "ExitCode": c.exit_code,
        }));
    }
    let columns = [
        ("NAME", "Name"),
        ("IMAGE", "Image"),
        ("COMMAND", "Command"),
        ("SERVICE", "Service"),
        ("CREATED", "RunningFor"),
        ("STATUS", "Status"),
        ("PORTS", "Ports"),
    ];
    Ok(print_ps(o, rows, JsonRows::Array, &columns))
}
