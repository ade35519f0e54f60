//! fleet.json in a module of its own: `up` plans it, the supervisor fills in the ports and
//! pids, and the fleet commands (`down`, `stop-host`, `state`) read it back, each from a
//! different process, so none of them owns it.

use crate::util::{Ctx, Result};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct HostInfo {
    pub name: String,
    pub groups: Vec<String>,
    pub version: String,
    pub canary: bool,
    pub current: bool,
    pub root: bool,
    pub user: String,
    pub port: u16,
    pub host_dir: PathBuf,
    pub app_path: PathBuf,
    pub sshd: usize,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct SshdInfo {
    pub index: usize,
    pub pid: i32,
    pub ports: Vec<u16>,
    pub config: PathBuf,
    pub log: PathBuf,
    pub hosts: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct FleetInfo {
    pub dir: PathBuf,
    pub user: String,
    pub sim: PathBuf,
    pub supervisor_pid: i32,
    pub hosts: Vec<HostInfo>,
    pub sshds: Vec<SshdInfo>,
}

pub fn read_fleet(dir: &Path) -> Result<FleetInfo> {
    let p = dir.join("fleet.json");
    let s = fs::read_to_string(&p).ctx(format!("reading {} (is the fleet up?)", p.display()))?;
    serde_json::from_str(&s).ctx(format!("parsing {}", p.display()))
}
