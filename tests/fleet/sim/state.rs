//! The simulated host's docker and database state, kept in `<host dir>/state.json`.

use crate::pg::{self, Cluster};
use crate::releases::ImageRef;
use crate::util::{self, Ctx, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

pub use crate::releases::{release_index, RELEASES};

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct Image {
    pub repo: String,
    pub tag: String,
    pub id: String,
    pub created: f64,
    pub size: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Mount {
    /// bind | volume
    pub kind: String,
    /// Host path (bind) or volume name.
    pub source: String,
    pub target: String,
    pub rw: bool,
    /// Another container's, taken by `--volumes-from`: in `Mounts`, not in `HostConfig`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inherited: bool,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct PortBinding {
    /// "7777/tcp"
    pub container: String,
    pub host_ip: String,
    pub host_port: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Endpoint {
    pub network: String,
    pub ip: String,
    pub aliases: Vec<String>,
    /// The address `--ip` fixed, kept across restarts (`IPAMConfig`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_ip: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct Container {
    pub id: String,
    pub name: String,
    /// The reference as given to docker run / compose.
    pub image: String,
    pub image_id: String,
    /// Config.Cmd and Config.Entrypoint (given or the image's).
    pub cmd: Vec<String>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub workdir: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub user: String,
    /// Config.Env: the container's own values first, then the image's not overridden.
    pub env: Vec<String>,
    /// Config.Labels: the image's and the container's.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// HostConfig.Binds: the -v values as given.
    #[serde(default)]
    pub binds: Vec<String>,
    #[serde(default)]
    pub mounts: Vec<Mount>,
    #[serde(default)]
    pub ports: Vec<PortBinding>,
    #[serde(default)]
    pub exposed: Vec<String>,
    /// HostConfig.RestartPolicy
    #[serde(default)]
    pub restart: String,
    #[serde(default)]
    pub restart_max: u32,
    #[serde(default)]
    pub auto_remove: bool,
    /// HostConfig.NetworkMode
    #[serde(default)]
    pub network_mode: String,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// HostConfig's settings given to `run` that are only kept (crate::hostconfig).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub host_config: serde_json::Map<String, serde_json::Value>,
    /// Config's settings given to `run` that are only kept (crate::hostconfig).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub config_kept: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub open_stdin: bool,
    /// created | running | exited
    pub status: String,
    pub exit_code: i32,
    pub created: f64,
    pub started: f64,
    pub finished: f64,
    pub pid: u32,
    /// Restarts counted before the current crash loop.
    #[serde(default)]
    pub restart_base: u32,
    /// Since when the container has been crash-looping.
    #[serde(default)]
    pub crash_since: Option<f64>,
    /// The daemon process running a one-shot command.
    #[serde(default)]
    pub job_pid: Option<i32>,
    /// Seconds a one-shot command takes (a `slow` fault).
    #[serde(default)]
    pub delay: f64,
    #[serde(default)]
    pub healthcheck: Option<crate::health::Healthcheck>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct Network {
    pub name: String,
    pub id: String,
    pub subnet: u8,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub next_ip: u32,
    /// The subnet `network create --subnet` gave (`172.30.0.0/16`): only such a network
    /// takes a fixed `--ip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_subnet: Option<String>,
}

impl Network {
    /// The subnet as docker shows it, and its gateway (the first address).
    pub fn subnet_and_gateway(&self) -> (String, String) {
        match self.user_subnet.as_deref().and_then(cidr) {
            Some((base, prefix)) => (
                format!("{}/{prefix}", std::net::Ipv4Addr::from(base)),
                std::net::Ipv4Addr::from(base + 1).to_string(),
            ),
            None => (
                format!("172.{}.0.0/16", self.subnet),
                format!("172.{}.0.1", self.subnet),
            ),
        }
    }

    /// Refuses a fixed address as docker's daemon does.
    pub fn check_fixed_ip(&self, ip: &str) -> std::result::Result<(), String> {
        let Some((base, prefix)) = self.user_subnet.as_deref().and_then(cidr) else {
            return Err("user specified IP address is supported only when connecting to networks with user configured subnets".into());
        };
        let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
        match ip.parse::<std::net::Ipv4Addr>() {
            Ok(addr) if u32::from(addr) & mask == base => Ok(()),
            _ => Err(format!(
                "Invalid address {ip}: It does not belong to any of this network's subnets"
            )),
        }
    }
}

/// `a.b.c.d/len` as the network's base address and prefix length.
pub fn cidr(text: &str) -> Option<(u32, u32)> {
    let (addr, prefix) = text.split_once('/')?;
    let prefix: u32 = prefix.parse().ok().filter(|p| *p <= 32)?;
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    Some((
        u32::from(addr.parse::<std::net::Ipv4Addr>().ok()?) & mask,
        prefix,
    ))
}

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct Volume {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct HostState {
    /// readme | compose | springcomp
    #[serde(default)]
    pub layout: String,
    /// The host's index in the fleet: its container addresses differ from other hosts'.
    #[serde(default)]
    pub index: u32,
    pub images: Vec<Image>,
    pub containers: Vec<Container>,
    pub networks: Vec<Network>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    pub pg: Cluster,
    /// The revision `init_app.py` last completed for (not visible in SQL).
    #[serde(default)]
    pub init: Option<String>,
}

pub fn state_path(host_dir: &Path) -> PathBuf {
    host_dir.join("state.json")
}

pub fn load(host_dir: &Path) -> Result<HostState> {
    let p = state_path(host_dir);
    let s = fs::read_to_string(&p).ctx(format!("reading {}", p.display()))?;
    let mut st: HostState = serde_json::from_str(&s).ctx(format!("parsing {}", p.display()))?;
    st.reap_jobs();
    Ok(st)
}

pub fn save(host_dir: &Path, st: &HostState) -> Result<()> {
    let s = serde_json::to_string(st).ctx("serialising state")?;
    util::write_atomic(&state_path(host_dir), s.as_bytes())
}

/// Load, let `f` change the state, save: under the host's lock, so that concurrent
/// commands on one host never lose each other's changes.
pub fn with_state<T>(host_dir: &Path, f: impl FnOnce(&mut HostState) -> T) -> Result<T> {
    let _l = util::lock(&host_dir.join(".lock"))?;
    let mut st = load(host_dir)?;
    let out = f(&mut st);
    st.track_crashes();
    save(host_dir, &st)?;
    Ok(out)
}

pub fn is_service_cmd(cmd: &[String]) -> bool {
    let c: Vec<&str> = cmd.iter().map(String::as_str).collect();
    matches!(
        c.as_slice(),
        ["gunicorn", ..]
            | ["postgres", ..]
            | ["docker-entrypoint.sh", ..]
            | [
                "python" | "python3",
                "email_handler.py" | "job_runner.py",
                ..
            ]
            | ["sleep", "infinity"]
    )
}

impl Container {
    pub fn label(&self, k: &str) -> Option<&str> {
        self.labels.get(k).map(String::as_str)
    }
    pub fn project(&self) -> Option<&str> {
        self.label("com.docker.compose.project")
    }
    pub fn app_version(&self) -> Option<String> {
        ImageRef::parse(&self.image).ok()?.app_version()
    }
    pub fn is_postgres(&self) -> bool {
        ImageRef::parse(&self.image)
            .map(|r| r.is_postgres())
            .unwrap_or(false)
    }
    pub fn runs(&self, script: &str) -> bool {
        self.cmd.iter().any(|a| a == script)
    }
    pub fn on_network(&self, n: &str) -> bool {
        self.endpoints.iter().any(|e| e.network == n)
    }
    pub fn env_get(&self, k: &str) -> Option<String> {
        self.env
            .iter()
            .find_map(|e| e.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
            .map(str::to_string)
    }
    pub fn restart_count(&self) -> u32 {
        let live = self
            .crash_since
            .map(|s| (util::now() - s).max(0.0) as u32 + 1)
            .unwrap_or(0);
        self.restart_base + live
    }
}

impl HostState {
    pub fn container(&self, key: &str) -> Option<&Container> {
        find_container(&self.containers, key).map(|i| &self.containers[i])
    }
    pub fn container_idx(&self, key: &str) -> Option<usize> {
        find_container(&self.containers, key)
    }
    pub fn network(&self, name: &str) -> Option<&Network> {
        self.networks
            .iter()
            .find(|n| n.name == name || (name.len() >= 6 && n.id.starts_with(name)))
    }
    pub fn image(&self, r: &ImageRef) -> Option<&Image> {
        self.images
            .iter()
            .find(|i| i.repo == r.repo && i.tag == r.tag)
    }
    /// Find an image by reference or by (a prefix of) its id.
    pub fn image_by_key(&self, key: &str) -> Option<&Image> {
        if let Ok(r) = ImageRef::parse(key) {
            if let Some(i) = self.image(&r) {
                return Some(i);
            }
        }
        let k = key.strip_prefix("sha256:").unwrap_or(key);
        if k.len() >= 4 && k.chars().all(|c| c.is_ascii_hexdigit()) {
            return self.images.iter().find(|i| i.id.starts_with(k));
        }
        None
    }
    pub fn add_image(&mut self, r: &ImageRef) -> Image {
        if let Some(i) = self.image(r) {
            return i.clone();
        }
        // One release is one image, whatever the tag's spelling.
        let seed = match r.app_version() {
            Some(v) => format!("{}:{v}", r.repo),
            None => r.full(),
        };
        let img = Image {
            repo: r.repo.clone(),
            tag: r.tag.clone(),
            id: util::hex_id(&seed),
            created: 1_600_000_000.0 + release_index(&r.tag).unwrap_or(0) as f64 * 86400.0 * 30.0,
            size: if r.is_postgres() {
                394_000_000
            } else {
                1_120_000_000
            },
        };
        self.images.push(img.clone());
        img
    }
    pub fn add_network(&mut self, name: &str, labels: BTreeMap<String, String>) -> Network {
        if let Some(n) = self.network(name) {
            return n.clone();
        }
        let subnet = 18 + self.networks.iter().filter(|n| n.subnet >= 18).count() as u8;
        let n = Network {
            name: name.into(),
            id: util::hex_id(&format!("net-{name}-{}", util::unique_seed())),
            subnet,
            labels,
            next_ip: 2,
            user_subnet: None,
        };
        self.networks.push(n.clone());
        n
    }
    /// A fresh address on a network: 172.<subnet>.<host index>.<n>, never reused.
    pub fn alloc_ip(&mut self, net: &str) -> String {
        let idx = self.index % 250;
        let Some(n) = self.networks.iter_mut().find(|n| n.name == net) else {
            return String::new();
        };
        let ip = n.next_ip.max(2);
        n.next_ip = ip + 1;
        match n.user_subnet.as_deref().and_then(cidr) {
            // Within the operator's subnet: the host index only where it leaves room.
            Some((base, prefix)) if prefix <= 16 => {
                std::net::Ipv4Addr::from(base + (idx << 8) + ip % 250).to_string()
            }
            Some((base, _)) => std::net::Ipv4Addr::from(base + ip % 250).to_string(),
            None => format!("172.{}.{}.{}", n.subnet, idx, ip % 250),
        }
    }
    pub fn db_container(&self) -> Option<&Container> {
        self.containers
            .iter()
            .find(|c| c.is_postgres() && c.status == "running")
    }
    pub fn db_running(&self) -> bool {
        self.db_container().is_some()
    }
    /// The application database (the one named in POSTGRES_DB).
    pub fn app_db_name(&self) -> String {
        self.containers
            .iter()
            .find(|c| c.is_postgres())
            .and_then(|c| c.env_get("POSTGRES_DB"))
            .unwrap_or_else(|| "simplelogin".into())
    }
    pub fn app_db(&self) -> Option<&pg::Database> {
        self.pg.databases.get(&self.app_db_name())
    }
    /// Why an app container of `version` cannot use the database (None: it can).
    pub fn schema_problem(&self, version: &str) -> Option<(&'static str, String)> {
        if !self.db_running() {
            return Some((
                "OperationalError",
                "could not translate host name \"sl-db\" to address: Name or service not known"
                    .into(),
            ));
        }
        pg::missing_for(self.app_db()?, version)
    }
    /// sl-job-runner crash-loops (docker restarts it) when the schema lacks what its image
    /// needs; gunicorn and the email handler keep running.
    pub fn crashing(&self, c: &Container) -> bool {
        if c.status != "running"
            || c.restart == "no"
            || c.restart.is_empty()
            || !c.runs("job_runner.py")
        {
            return false;
        }
        match c.app_version() {
            Some(v) => self.schema_problem(&v).is_some(),
            None => false,
        }
    }
    /// Keep the restart counters in step with the state that was just changed.
    pub fn track_crashes(&mut self) {
        let now = util::now();
        let flags: Vec<bool> = self.containers.iter().map(|c| self.crashing(c)).collect();
        for (c, crash) in self.containers.iter_mut().zip(flags) {
            match (crash, c.crash_since) {
                (true, None) => c.crash_since = Some(now),
                (false, Some(_)) => {
                    c.restart_base = c.restart_count();
                    c.crash_since = None;
                }
                _ => {}
            }
        }
    }
    /// One-shot containers whose daemon process died without a word exited with 137.
    fn reap_jobs(&mut self) {
        for c in &mut self.containers {
            if let (Some(p), "running") = (c.job_pid, c.status.as_str()) {
                if !util::pid_alive(p) {
                    c.status = "exited".into();
                    c.exit_code = 137;
                    c.finished = util::now();
                    c.job_pid = None;
                }
            }
        }
        self.containers
            .retain(|c| !(c.auto_remove && c.status == "exited"));
    }
    /// The version the app on sl-app serves, if gunicorn runs.
    pub fn serving_version(&self) -> Option<String> {
        let c = self.container("sl-app")?;
        if c.status != "running" {
            return None;
        }
        c.app_version()
    }
}

fn find_container(cs: &[Container], key: &str) -> Option<usize> {
    let k = key.strip_prefix('/').unwrap_or(key);
    if let Some(i) = cs.iter().position(|c| c.name == k) {
        return Some(i);
    }
    if k.len() >= 3 && k.chars().all(|c| c.is_ascii_hexdigit()) {
        return cs.iter().position(|c| c.id.starts_with(k));
    }
    None
}

pub fn new_container(name: &str, image: &str, image_id: &str) -> Container {
    Container {
        id: util::hex_id(&format!("{name}-{}", util::unique_seed())),
        name: name.to_string(),
        image: image.to_string(),
        image_id: image_id.to_string(),
        status: "created".into(),
        created: util::now(),
        restart: "no".into(),
        ..Default::default()
    }
}
