//! Test harness for the simulated fleet: `mod fleet;` in an integration test.
//!
//! ```ignore
//! let f = Fleet::start(Spec::new().group("production", "prod", 10, "v4.65.0").canary("prod-01"));
//! let out = f.ssh("prod-01", "docker ps");
//! ```
#![allow(dead_code)]

use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The simulator's executable. fleet-sim's own tests get it from cargo; fleetup's tests
/// (fleet-sim is another package, so cargo gives them no `CARGO_BIN_EXE_fleet-sim`) build it
/// once per test process, with the cargo that built the test, into the test's own target
/// directory and profile: a no-op after the top-level test command, which has built it.
pub fn sim() -> &'static Path {
    static SIM: OnceLock<PathBuf> = OnceLock::new();
    SIM.get_or_init(|| match option_env!("CARGO_BIN_EXE_fleet-sim") {
        Some(exe) => PathBuf::from(exe),
        None => build_sim(),
    })
}

/// Builds fleet-sim beside the running test, which cargo put in `<target>/<profile>/deps/`.
fn build_sim() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from <target>/<profile>/deps");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(name) => name,
        None => panic!("no profile folder above {}", exe.display()),
    };
    let target_dir = profile_dir.parent().expect("a target folder");
    let status = Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "build",
            "--quiet",
            "--bin",
            "fleet-sim",
            "--profile",
            profile,
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .stdin(Stdio::null())
        .status()
        .expect("run cargo build --bin fleet-sim");
    assert!(status.success(), "cargo build --bin fleet-sim failed");
    profile_dir.join("fleet-sim")
}

#[derive(Clone, Debug, Default)]
pub struct HostSpec {
    pub name: String,
    pub groups: Vec<String>,
    pub version: String,
    pub canary: bool,
    pub app_path: Option<String>,
    pub root: bool,
    pub current: bool,
    pub own_sshd: bool,
    /// readme | compose | springcomp (None: compose).
    pub layout: Option<String>,
    /// Image repository (None: simplelogin/app-ci).
    pub image: Option<String>,
    /// Some(false): tags without `v` (simplelogin/app:4.66.1).
    pub v_prefix: Option<bool>,
    /// The seed's failure: app on `version`'s image, schema at the release before.
    pub broken: bool,
    /// Extra `docker run` flags per container (readme layout).
    pub extra_args: Vec<(String, Vec<String>)>,
}

impl HostSpec {
    pub fn new(name: &str, group: &str, version: &str) -> Self {
        HostSpec {
            name: name.into(),
            groups: vec![group.into()],
            version: version.into(),
            ..Default::default()
        }
    }
    pub fn canary(mut self) -> Self {
        self.canary = true;
        self
    }
    pub fn root(mut self) -> Self {
        self.root = true;
        self
    }
    pub fn current(mut self) -> Self {
        self.current = true;
        self
    }
    pub fn own_sshd(mut self) -> Self {
        self.own_sshd = true;
        self
    }
    pub fn app_path(mut self, p: impl Into<String>) -> Self {
        self.app_path = Some(p.into());
        self
    }
    pub fn group(mut self, g: &str) -> Self {
        self.groups.push(g.into());
        self
    }
    pub fn layout(mut self, l: &str) -> Self {
        self.layout = Some(l.into());
        self
    }
    pub fn image(mut self, repo: &str) -> Self {
        self.image = Some(repo.into());
        self
    }
    pub fn v_prefix(mut self, v: bool) -> Self {
        self.v_prefix = Some(v);
        self
    }
    pub fn broken(mut self) -> Self {
        self.broken = true;
        self
    }
    /// Extra flags for one container's `docker run` (readme layout), e.g. `["-e", "K=V"]`.
    pub fn extra_args(mut self, container: &str, args: &[&str]) -> Self {
        self.extra_args.push((
            container.into(),
            args.iter().map(|a| a.to_string()).collect(),
        ));
        self
    }
}

#[derive(Clone, Debug, Default)]
pub struct Spec {
    pub user: Option<String>,
    pub hosts: Vec<HostSpec>,
}

impl Spec {
    pub fn new() -> Self {
        Spec::default()
    }
    pub fn host(mut self, h: HostSpec) -> Self {
        self.hosts.push(h);
        self
    }
    /// `n` hosts named `<prefix>-01`.. in `group`, all at `version`.
    pub fn group(mut self, group: &str, prefix: &str, n: usize, version: &str) -> Self {
        for i in 1..=n {
            self.hosts
                .push(HostSpec::new(&format!("{prefix}-{i:02}"), group, version));
        }
        self
    }
    /// Change one host already in the spec.
    pub fn with(mut self, name: &str, f: impl FnOnce(HostSpec) -> HostSpec) -> Self {
        if let Some(i) = self.hosts.iter().position(|h| h.name == name) {
            let h = self.hosts.remove(i);
            self.hosts.insert(i, f(h));
        } else {
            panic!("no host {name} in the spec");
        }
        self
    }
    pub fn canary(self, name: &str) -> Self {
        self.with(name, HostSpec::canary)
    }
    pub fn user(mut self, u: &str) -> Self {
        self.user = Some(u.into());
        self
    }
    pub fn to_yaml(&self) -> String {
        let mut s = String::new();
        if let Some(u) = &self.user {
            s.push_str(&format!("user: {u}\n"));
        }
        s.push_str("hosts:\n");
        for h in &self.hosts {
            s.push_str(&format!(
                "  - name: {}\n    version: {}\n",
                h.name, h.version
            ));
            s.push_str(&format!("    groups: [{}]\n", h.groups.join(", ")));
            for (k, v) in [
                ("canary", h.canary),
                ("root", h.root),
                ("current", h.current),
                ("own_sshd", h.own_sshd),
            ] {
                if v {
                    s.push_str(&format!("    {k}: true\n"));
                }
            }
            if h.broken {
                s.push_str("    broken: true\n");
            }
            for (k, v) in [("layout", &h.layout), ("image", &h.image)] {
                if let Some(v) = v {
                    s.push_str(&format!("    {k}: {v}\n"));
                }
            }
            if let Some(v) = h.v_prefix {
                s.push_str(&format!("    v_prefix: {v}\n"));
            }
            if !h.extra_args.is_empty() {
                s.push_str("    extra_args:\n");
                for (c, a) in &h.extra_args {
                    s.push_str(&format!(
                        "      {c}: {}\n",
                        serde_json::to_string(a).unwrap_or_default()
                    ));
                }
            }
            if let Some(p) = &h.app_path {
                s.push_str(&format!(
                    "    app_path: {}\n",
                    serde_json::to_string(p).unwrap_or_default()
                ));
            }
        }
        s
    }
}

#[derive(Deserialize, Debug, Clone)]
pub struct HostInfo {
    pub name: String,
    pub groups: Vec<String>,
    pub version: String,
    pub canary: bool,
    pub root: bool,
    pub user: String,
    pub port: u16,
    pub host_dir: PathBuf,
    pub app_path: PathBuf,
}

#[derive(Deserialize, Debug, Clone)]
struct FleetInfo {
    hosts: Vec<HostInfo>,
}

/// One line of a host's commands.log.
#[derive(Deserialize, Debug, Clone)]
pub struct CommandRecord {
    pub ev: String,
    pub id: String,
    pub kind: String,
    pub cmd: String,
    pub t: f64,
    pub pid: u32,
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(default)]
    pub rc: Option<i32>,
    #[serde(default)]
    pub signal: Option<String>,
    #[serde(default)]
    pub dropped: bool,
}

pub struct Fleet {
    tmp: tempfile::TempDir,
    dir: PathBuf,
    hosts: Vec<HostInfo>,
}

/// A fault rule, as in faults.json.
pub fn rule(pattern: &str, action: &str) -> Value {
    serde_json::json!({"match": pattern, "action": action})
}

impl Fleet {
    pub fn start(spec: Spec) -> Fleet {
        Self::try_start(spec).unwrap_or_else(|e| panic!("fleet did not start: {e}"))
    }

    pub fn try_start(spec: Spec) -> Result<Fleet, String> {
        let tmp = tempfile::Builder::new()
            .prefix("fleet-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let dir = tmp.path().join("fleet");
        let spec_path = tmp.path().join("spec.yml");
        std::fs::write(&spec_path, spec.to_yaml()).map_err(|e| e.to_string())?;
        let out = Command::new(sim())
            .arg("up")
            .arg("--dir")
            .arg(&dir)
            .arg("--spec")
            .arg(&spec_path)
            .arg("--owner")
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running fleet-sim up: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let fj = std::fs::read_to_string(dir.join("fleet.json")).map_err(|e| e.to_string())?;
        let info: FleetInfo = serde_json::from_str(&fj).map_err(|e| e.to_string())?;
        Ok(Fleet {
            tmp,
            dir,
            hosts: info.hosts,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn tmp(&self) -> &Path {
        self.tmp.path()
    }
    pub fn inventory_path(&self) -> PathBuf {
        self.dir.join("inventory.yml")
    }
    pub fn known_hosts_path(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }
    pub fn key_path(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }
    pub fn hosts(&self) -> &[HostInfo] {
        &self.hosts
    }
    pub fn host(&self, name: &str) -> &HostInfo {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name}"))
    }
    pub fn port(&self, name: &str) -> u16 {
        self.host(name).port
    }
    pub fn host_dir(&self, name: &str) -> PathBuf {
        self.host(name).host_dir.clone()
    }
    pub fn app_path(&self, name: &str) -> PathBuf {
        self.host(name).app_path.clone()
    }

    /// The host's command records so far. A line without its newline yet is a record still
    /// being appended (a long command's, in one write a read can overtake): not there yet.
    pub fn commands(&self, name: &str) -> Vec<CommandRecord> {
        let s =
            std::fs::read_to_string(self.host_dir(name).join("commands.log")).unwrap_or_default();
        let complete = s.rfind('\n').map_or("", |end| &s[..end]);
        complete
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad log line {l:?}: {e}")))
            .collect()
    }

    pub fn state(&self, name: &str) -> Value {
        let out = self.sim(&["state", "--host", name]);
        assert!(
            out.status.success(),
            "fleet-sim state: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("state JSON")
    }

    /// Run SQL against a host's database (`fleet-sim sql`): tuples only, unaligned.
    pub fn sql(&self, name: &str, sql: &str) -> String {
        let out = self.sim(&["sql", "--host", name, sql]);
        assert!(
            out.status.success(),
            "fleet-sim sql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A host's fault rules as faults.json holds them now (a rule's `times` counts down as
    /// commands take it).
    pub fn faults(&self, name: &str) -> Vec<Value> {
        std::fs::read_to_string(self.host_dir(name).join("faults.json"))
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default()
    }

    /// Append a rule (a JSON object as in faults.json) to a host's faults.
    pub fn fault(&self, name: &str, rule: Value) {
        let p = self.host_dir(name).join("faults.json");
        let mut rules = self.faults(name);
        rules.push(rule);
        let tmp = p.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_string_pretty(&rules).unwrap_or_default(),
        )
        .expect("write faults");
        std::fs::rename(&tmp, &p).expect("rename faults");
    }

    pub fn clear_faults(&self, name: &str) {
        let _ = std::fs::remove_file(self.host_dir(name).join("faults.json"));
    }

    /// The host's port stops answering for good (the host needs `own_sshd`).
    pub fn stop_host(&self, name: &str) {
        let out = self.sim(&["stop-host", "--host", name]);
        assert!(
            out.status.success(),
            "stop-host: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn down(&self) {
        let _ = self.sim(&["down"]);
    }

    fn sim(&self, args: &[&str]) -> Output {
        let (cmd, rest) = args.split_first().expect("a command");
        Command::new(sim())
            .arg(cmd)
            .arg("--dir")
            .arg(&self.dir)
            .args(rest)
            .output()
            .expect("run fleet-sim")
    }

    /// /usr/bin/ssh to a host with strict host key checking against the fleet's known_hosts.
    pub fn ssh_command(&self, name: &str, cmd: &str) -> Command {
        let h = self.host(name);
        let mut c = Command::new("/usr/bin/ssh");
        c.arg("-i")
            .arg(self.key_path())
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.known_hosts_path().display()
            ))
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
            ])
            .args(["-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"])
            .arg("-p")
            .arg(h.port.to_string())
            .arg(format!("{}@127.0.0.1", h.user))
            .arg(cmd)
            .stdin(Stdio::null());
        c
    }

    pub fn ssh(&self, name: &str, cmd: &str) -> Output {
        self.ssh_command(name, cmd).output().expect("run ssh")
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.down();
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Processes (any user) whose environment says they run for this host dir.
pub fn processes_of_host(host_dir: &Path) -> Vec<i32> {
    let needle = format!("FLEET_HOST_DIR={}", host_dir.display());
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat
                .rsplit(')')
                .next()
                .map(|r| r.trim_start().starts_with('Z'))
                .unwrap_or(true)
            {
                continue;
            }
            if env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
                out.push(pid);
            }
        }
    }
    out
}

/// Whether a process exists and is not a zombie.
pub fn pid_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .map(|r| !r.trim_start().starts_with('Z'))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

/// The pids recorded for a fleet's sshd listeners.
pub fn sshd_pids(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("pids"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Runs `sh -c CMD`, which must succeed, and returns its stdout.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Single-quote for a remote shell.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A network namespace owning 10.213.7.2, reached over a veth pair, whose route back to
/// us is a blackhole: a TCP connect to it hangs, and nothing leaves the machine. Removed on
/// drop.
pub struct Blackhole {
    ns: String,
    veth: String,
    pub address: &'static str,
}

impl Blackhole {
    pub fn create() -> Blackhole {
        let id = std::process::id() % 100000;
        let ns = format!("fupbh{id}");
        let veth = format!("fupbh{id}a");
        let peer = format!("fupbh{id}b");
        let script = format!(
            "ip netns add {ns} && ip link add {veth} type veth peer name {peer} && \
             ip link set {peer} netns {ns} && ip addr add 10.213.7.1/30 dev {veth} && \
             ip link set {veth} up && ip netns exec {ns} ip addr add 10.213.7.2/30 dev {peer} && \
             ip netns exec {ns} ip link set {peer} up && \
             ip netns exec {ns} ip route add blackhole 10.213.7.1/32"
        );
        sh(&script);
        Blackhole {
            ns,
            veth,
            address: "10.213.7.2",
        }
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}
