//! The simulated host's docker and database state, kept in `<host dir>/state.json`.

use crate::util::{self, Ctx, Result};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

/// Released versions and the alembic head each one's image migrates to. Consecutive
/// releases that share a head need no migration between them, as in the real project.
pub const RELEASES: &[(&str, &str, &str)] = &[
    ("v4.63.0", "1a2b3c4d5e6f", "initial"),
    ("v4.64.0", "2c2093c82bc0", "add mailbox verification index"),
    ("v4.64.2", "2c2093c82bc0", ""),
    ("v4.65.0", "3ebfbaeb76c0", "add alias note column"),
    ("v4.65.1", "3ebfbaeb76c0", ""),
    ("v4.65.2", "5047fcbd57c7", "add partner subscription table"),
    (
        "v4.66.0",
        "818b4a856f3f",
        "add custom domain catch-all rules",
    ),
    ("v4.66.1", "818b4a856f3f", ""),
    (
        "v4.67.0",
        "bb4b0d33ff1a",
        "add alias mailbox pgp fingerprint",
    ),
    ("v4.67.1", "c5e1d4a7f209", "add user audit log"),
];

/// The first version that has the /version endpoint.
pub const VERSION_ENDPOINT_SINCE: &str = "v4.65.2";
pub const DB_USER: &str = "myuser";
pub const DB_NAME: &str = "simplelogin";
pub const POSTGRES_IMAGE: &str = "postgres:12.1";
pub const APP_REPOS: &[&str] = &["simplelogin/app-ci", "simplelogin/app"];

pub fn release_index(version: &str) -> Option<usize> {
    let v = if version == "latest" {
        RELEASES.last()?.0
    } else {
        version
    };
    RELEASES.iter().position(|r| r.0 == v)
}

pub fn head_of(version: &str) -> Option<&'static str> {
    release_index(version).map(|i| RELEASES[i].1)
}

/// Position of a revision in the migration chain (by first release that reached it).
pub fn revision_index(rev: &str) -> Option<usize> {
    let mut heads: Vec<&str> = Vec::new();
    for r in RELEASES {
        if heads.last() != Some(&r.1) {
            heads.push(r.1);
        }
    }
    heads.iter().position(|h| *h == rev)
}

/// The distinct revisions after `from` up to and including `to`, with their messages.
pub fn migration_steps(
    from: Option<&str>,
    to: &str,
) -> Vec<(Option<&'static str>, &'static str, &'static str)> {
    let mut chain: Vec<(&'static str, &'static str)> = Vec::new();
    for r in RELEASES {
        if chain.last().map(|c| c.0) != Some(r.1) {
            chain.push((r.1, r.2));
        }
    }
    let start = match from {
        None => 0,
        Some(f) => match chain.iter().position(|c| c.0 == f) {
            Some(i) => i + 1,
            None => return Vec::new(),
        },
    };
    let end = match chain.iter().position(|c| c.0 == to) {
        Some(i) => i,
        None => return Vec::new(),
    };
    (start..=end)
        .map(|i| {
            (
                if i == 0 { None } else { Some(chain[i - 1].0) },
                chain[i].0,
                chain[i].1,
            )
        })
        .collect()
}

pub fn version_ge(a: &str, b: &str) -> bool {
    match (release_index(a), release_index(b)) {
        (Some(x), Some(y)) => x >= y,
        _ => false,
    }
}

/// A parsed image reference as docker normalises it (docker.io/library/ dropped, tag
/// defaulting to latest).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRef {
    pub repo: String,
    pub tag: String,
}

impl ImageRef {
    pub fn parse(s: &str) -> std::result::Result<ImageRef, String> {
        if s.is_empty() || s.ends_with(':') || s.contains(char::is_whitespace) || s.starts_with(':')
        {
            return Err("invalid reference format".into());
        }
        let mut name = s;
        for p in ["docker.io/library/", "docker.io/", "library/"] {
            if let Some(r) = name.strip_prefix(p) {
                name = r;
                break;
            }
        }
        let slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (repo, tag) = match name[slash..].rfind(':') {
            Some(i) => (&name[..slash + i], &name[slash + i + 1..]),
            None => (name, "latest"),
        };
        if repo.chars().any(|c| c.is_ascii_uppercase()) {
            return Err("invalid reference format: repository name must be lowercase".into());
        }
        Ok(ImageRef {
            repo: repo.into(),
            tag: tag.into(),
        })
    }
    pub fn full(&self) -> String {
        format!("{}:{}", self.repo, self.tag)
    }
    /// The app version an image runs, when it is a SimpleLogin app image.
    pub fn app_version(&self) -> Option<String> {
        if APP_REPOS.contains(&self.repo.as_str()) && release_index(&self.tag).is_some() {
            if self.tag == "latest" {
                return RELEASES.last().map(|r| r.0.to_string());
            }
            return Some(self.tag.clone());
        }
        None
    }
}

pub enum PullError {
    ManifestUnknown,
    AccessDenied,
}

/// What the simulated registry holds.
pub fn registry_has(r: &ImageRef) -> std::result::Result<(), PullError> {
    if APP_REPOS.contains(&r.repo.as_str()) {
        return if release_index(&r.tag).is_some() {
            Ok(())
        } else {
            Err(PullError::ManifestUnknown)
        };
    }
    if r.repo == "postgres" {
        return if ["12.1", "12", "latest"].contains(&r.tag.as_str()) {
            Ok(())
        } else {
            Err(PullError::ManifestUnknown)
        };
    }
    if ["busybox", "alpine"].contains(&r.repo.as_str()) {
        return Ok(());
    }
    Err(PullError::AccessDenied)
}

pub fn pull_error_message(r: &ImageRef, e: &PullError) -> String {
    match e {
        PullError::ManifestUnknown => format!(
            "manifest for {} not found: manifest unknown: manifest unknown",
            r.full()
        ),
        PullError::AccessDenied => format!(
            "pull access denied for {}, repository does not exist or may require 'docker login': denied: requested access to the resource is denied",
            r.repo
        ),
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct Image {
    pub repo: String,
    pub tag: String,
    pub id: String,
    pub created: f64,
    pub size: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct Container {
    pub id: String,
    pub name: String,
    /// The reference as given to docker run / compose.
    pub image: String,
    pub image_id: String,
    pub cmd: Vec<String>,
    /// created | running | exited
    pub status: String,
    pub exit_code: i32,
    pub created: f64,
    pub started: f64,
    pub finished: f64,
    pub network: Option<String>,
    pub env: Vec<String>,
    pub mounts: Vec<String>,
    pub ports: Vec<String>,
    pub compose_project: Option<String>,
    pub compose_service: Option<String>,
    pub pid: u32,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct Db {
    /// alembic_version of the database, None for an empty database.
    pub schema: Option<String>,
    /// The schema revision `init_app.py` last completed for.
    pub init: Option<String>,
    /// Rows of user data, carried through dump and restore.
    pub users: u32,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct HostState {
    pub images: Vec<Image>,
    pub containers: Vec<Container>,
    pub networks: Vec<String>,
    pub db: Db,
}

pub fn state_path(host_dir: &Path) -> PathBuf {
    host_dir.join("state.json")
}

pub fn load(host_dir: &Path) -> Result<HostState> {
    let p = state_path(host_dir);
    let s = fs::read_to_string(&p).ctx(format!("reading {}", p.display()))?;
    serde_json::from_str(&s).ctx(format!("parsing {}", p.display()))
}

pub fn save(host_dir: &Path, st: &HostState) -> Result<()> {
    let s = serde_json::to_string_pretty(st).ctx("serialising state")?;
    util::write_atomic(&state_path(host_dir), s.as_bytes())
}

/// Load, let `f` change the state, save: under the host's lock, so that concurrent
/// commands on one host never lose each other's changes.
pub fn with_state<T>(host_dir: &Path, f: impl FnOnce(&mut HostState) -> T) -> Result<T> {
    let _l = util::lock(&host_dir.join(".lock"))?;
    let mut st = load(host_dir)?;
    let out = f(&mut st);
    save(host_dir, &st)?;
    Ok(out)
}

impl HostState {
    pub fn container(&self, key: &str) -> Option<&Container> {
        find_container(&self.containers, key).map(|i| &self.containers[i])
    }
    pub fn container_idx(&self, key: &str) -> Option<usize> {
        find_container(&self.containers, key)
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
        if k.len() >= 4 {
            return self.images.iter().find(|i| i.id.starts_with(k));
        }
        None
    }
    pub fn add_image(&mut self, r: &ImageRef) -> Image {
        if let Some(i) = self.image(r) {
            return i.clone();
        }
        let img = Image {
            repo: r.repo.clone(),
            tag: r.tag.clone(),
            id: util::hex_id(&r.full()),
            created: 1_700_000_000.0 + release_index(&r.tag).unwrap_or(0) as f64 * 86400.0 * 14.0,
            size: if r.repo == "postgres" {
                394_000_000
            } else {
                1_120_000_000
            },
        };
        self.images.push(img.clone());
        img
    }
    /// Whether this container is actually serving. App containers crash at start (and
    /// docker keeps restarting them) when the schema does not match their image.
    pub fn app_container_crashing(&self, c: &Container) -> bool {
        let Ok(r) = ImageRef::parse(&c.image) else {
            return false;
        };
        let Some(v) = r.app_version() else {
            return false;
        };
        if c.status != "running" {
            return false;
        }
        !self.db_ready_for(&v)
    }
    pub fn db_running(&self) -> bool {
        self.container("sl-db")
            .map(|c| c.status == "running")
            .unwrap_or(false)
    }
    pub fn db_ready_for(&self, version: &str) -> bool {
        let head = head_of(version);
        self.db_running()
            && head.is_some()
            && self.db.schema.as_deref() == head
            && self.db.init.as_deref() == head
    }
    /// The version the app on :7777 serves, if it answers at all.
    pub fn serving_version(&self) -> Option<String> {
        let c = self.container("sl-app")?;
        if c.status != "running" {
            return None;
        }
        let v = ImageRef::parse(&c.image).ok()?.app_version()?;
        if self.db_ready_for(&v) {
            Some(v)
        } else {
            None
        }
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

pub fn new_container(name: &str, image: &str, image_id: &str, cmd: Vec<String>) -> Container {
    let t = util::now();
    Container {
        id: util::hex_id(&format!("{name}-{}", util::unique_seed())),
        name: name.to_string(),
        image: image.to_string(),
        image_id: image_id.to_string(),
        cmd,
        status: "created".into(),
        created: t,
        ..Default::default()
    }
}

/// The command a service's image runs by default, for `docker ps`.
pub fn default_cmd(service: &str, image: &str) -> Vec<String> {
    if image.starts_with("postgres") {
        return vec!["docker-entrypoint.sh".into(), "postgres".into()];
    }
    match service {
        "sl-email" => vec!["python".into(), "email_handler.py".into()],
        "sl-job-runner" => vec!["python".into(), "job_runner.py".into()],
        _ => vec![
            "gunicorn".into(),
            "wsgi:app".into(),
            "-b".into(),
            "0.0.0.0:7777".into(),
        ],
    }
}

/// The state a freshly provisioned host at `version` has: everything running and healthy.
pub fn initial(version: &str, project: &str) -> HostState {
    let mut st = HostState {
        networks: vec!["sl-network".into()],
        ..Default::default()
    };
    let pg = ImageRef::parse(POSTGRES_IMAGE).unwrap_or(ImageRef {
        repo: "postgres".into(),
        tag: "12.1".into(),
    });
    let pg_img = st.add_image(&pg);
    let app_ref = ImageRef {
        repo: "simplelogin/app-ci".into(),
        tag: version.into(),
    };
    let app_img = st.add_image(&app_ref);
    let t = util::now() - 3.0 * 3600.0;
    for (svc, img) in [
        ("sl-db", (POSTGRES_IMAGE.to_string(), pg_img.id.clone())),
        ("sl-app", (app_ref.full(), app_img.id.clone())),
        ("sl-email", (app_ref.full(), app_img.id.clone())),
        ("sl-job-runner", (app_ref.full(), app_img.id.clone())),
    ] {
        let mut c = new_container(svc, &img.0, &img.1, default_cmd(svc, &img.0));
        c.status = "running".into();
        c.created = t;
        c.started = t;
        c.network = Some("sl-network".into());
        c.compose_project = Some(project.into());
        c.compose_service = Some(svc.into());
        c.pid = 4000 + c.name.len() as u32;
        if svc == "sl-app" {
            c.ports = vec!["127.0.0.1:7777->7777/tcp".into()];
        }
        if svc == "sl-email" {
            c.ports = vec!["127.0.0.1:20381->20381/tcp".into()];
        }
        st.containers.push(c);
    }
    let head = head_of(version).map(str::to_string);
    st.db = Db {
        schema: head.clone(),
        init: head,
        users: 3,
    };
    st
}
