//! The commands for a fleet that is up (`down`, `stop-host`, `fault`, `clear-faults`,
//! `state`, `sql`) apart from `up`: tests and scripts call them one at a time on what `up`
//! left in the fleet dir, and they need none of the launching.

use crate::faults::{self, Rule};
use crate::fleetinfo::{read_fleet, HostInfo};
use crate::state;
use crate::util::{self, Ctx, Result};
use std::fs;
use std::path::{Path, PathBuf};

pub fn down(dir: &Path) -> Result<()> {
    let sup = fs::read_to_string(dir.join("supervisor.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    if let Some(p) = sup {
        if util::pid_alive(p)
            && util::proc_comm(p)
                .map(|c| c.starts_with("fleet-sim"))
                .unwrap_or(false)
        {
            util::kill(p, libc::SIGTERM);
            let deadline = util::now() + 5.0;
            while util::now() < deadline && util::pid_alive(p) {
                util::sleep_secs(0.005);
            }
        }
    }
    // If the supervisor was gone or stuck, kill the sshds it recorded ourselves.
    if let Ok(pids) = fs::read_to_string(dir.join("pids")) {
        let alive: Vec<i32> = pids
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .filter(|&p| util::pid_alive(p) && util::proc_comm(p).as_deref() == Some("sshd"))
            .collect();
        util::kill_trees(&alive);
    }
    if let Some(p) = sup {
        if util::pid_alive(p)
            && util::proc_comm(p)
                .map(|c| c.starts_with("fleet-sim"))
                .unwrap_or(false)
        {
            util::kill_trees(&[p]);
        }
    }
    let _ = fs::remove_file(dir.join("supervisor.pid"));
    Ok(())
}

pub fn stop_host(dir: &Path, name: &str) -> Result<()> {
    let f = read_fleet(dir)?;
    let h = f
        .hosts
        .iter()
        .find(|h| h.name == name)
        .ok_or_else(|| format!("no host {name} in the fleet"))?;
    let s = &f.sshds[h.sshd];
    if s.hosts.len() > 1 {
        return Err(format!(
            "host {name} shares its sshd with {}: give it `own_sshd: true` in the spec to stop it alone",
            s.hosts.iter().filter(|n| *n != name).cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    if util::pid_alive(s.pid) && util::proc_comm(s.pid).as_deref() == Some("sshd") {
        util::kill_trees(&[s.pid]);
        let deadline = util::now() + 2.0;
        while util::now() < deadline && util::pid_alive(s.pid) {
            util::sleep_secs(0.005);
        }
    }
    fs::write(h.host_dir.join("stopped"), "").ctx("marking the host stopped")?;
    Ok(())
}

fn host_dirs(dir: &Path, host: Option<&str>) -> Result<Vec<PathBuf>> {
    let hosts = dir.join("hosts");
    match host {
        Some(h) => {
            let p = hosts.join(h);
            if !p.is_dir() {
                return Err(format!("no host {h} in {}", dir.display()));
            }
            Ok(vec![p])
        }
        None => Ok(fs::read_dir(&hosts)
            .ctx(format!("listing {}", hosts.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect()),
    }
}

pub fn add_fault(dir: &Path, host: Option<&str>, rule: Rule) -> Result<()> {
    for h in host_dirs(dir, host)? {
        faults::add_rule(&h, rule.clone())?;
    }
    Ok(())
}

pub fn clear_faults(dir: &Path, host: Option<&str>) -> Result<()> {
    for h in host_dirs(dir, host)? {
        faults::clear(&h)?;
    }
    Ok(())
}

pub fn print_state(dir: &Path, host: &str) -> Result<()> {
    let hd = host_dirs(dir, Some(host))?.remove(0);
    let st = state::load(&hd)?;
    let mut v = serde_json::to_value(&st).ctx("serialising state")?;
    if let Some(m) = v.as_object_mut() {
        m.remove("pg");
    }
    v["serving"] = serde_json::json!(st.serving_version());
    let db = st.app_db();
    let rows: serde_json::Map<String, serde_json::Value> = db
        .map(|d| {
            d.tables
                .iter()
                .map(|(n, t)| (n.clone(), serde_json::json!(t.rows.len())))
                .collect()
        })
        .unwrap_or_default();
    v["db"] = serde_json::json!({
        "schema": db.and_then(|d| d.revision()),
        "init": st.init,
        "users": db.map(|d| d.count("users")).unwrap_or(0),
        "tables": db.map(|d| d.tables.keys().cloned().collect::<Vec<_>>()).unwrap_or_default(),
        "rows": rows,
        "user": st.pg.user,
        "name": st.app_db_name(),
    });
    for (i, c) in st.containers.iter().enumerate() {
        v["containers"][i]["state"] = serde_json::json!(crate::inspect::view(&st, c).status);
        v["containers"][i]["restart_count"] = serde_json::json!(c.restart_count());
    }
    let info: Option<HostInfo> = fs::read_to_string(hd.join("host.json"))
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok());
    if let Some(i) = info {
        let env = fs::read_to_string(i.app_path.join(".env")).unwrap_or_default();
        let ver = env
            .lines()
            .find_map(|l| l.strip_prefix("SL_VERSION="))
            .map(|s| s.trim().to_string());
        v["env_version"] = serde_json::json!(ver);
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&v).ctx("serialising state")?
    );
    Ok(())
}

pub fn sql(dir: &Path, host: &str, q: &str) -> Result<()> {
    let hd = host_dirs(dir, Some(host))?.remove(0);
    let out = crate::dexec::sql_cli(&hd, q)?;
    print!("{out}");
    Ok(())
}
