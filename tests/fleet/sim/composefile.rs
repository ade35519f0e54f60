//! Reading a compose project as docker compose v2 does: the file (and the files it
//! `include:`s), YAML anchors and merge keys, `.env` interpolation (the environment wins),
//! services with their image, command, env, volumes, ports, networks, restart policy,
//! healthcheck and `depends_on` conditions.

use crate::run::Job;
use serde_yaml::Value as Y;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

pub struct Service {
    pub name: String,
    pub container: String,
    pub spec: Job,
    /// (service, condition)
    pub deps: Vec<(String, String)>,
    pub hash: String,
}

pub struct Project {
    pub name: String,
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    /// (key, real name, external)
    pub networks: Vec<(String, String, bool)>,
    /// (key, real name)
    pub volumes: Vec<(String, String)>,
    pub services: Vec<Service>,
}

pub fn read_env_file(p: &Path) -> HashMap<String, String> {
    let mut m = HashMap::new();
    if let Ok(s) = fs::read_to_string(p) {
        for line in s.lines() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let l = l.strip_prefix("export ").unwrap_or(l);
            if let Some((k, v)) = l.split_once('=') {
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|x| x.strip_suffix('"'))
                    .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
                    .unwrap_or(v);
                m.insert(k.trim().to_string(), v.to_string());
            }
        }
    }
    m
}

/// Compose's variable interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, $VAR, $$.
pub fn interpolate(
    s: &str,
    env: &HashMap<String, String>,
    warned: &mut Vec<String>,
    errors: &mut Vec<String>,
) -> String {
    let mut out = String::new();
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut lookup = |name: &str, default: Option<(&str, bool)>, out: &mut String| {
        let v = std::env::var(name).ok().or_else(|| env.get(name).cloned());
        match (v, default) {
            (Some(v), Some((d, true))) if v.is_empty() => out.push_str(d),
            (Some(v), _) => out.push_str(&v),
            (None, Some((d, _))) => out.push_str(d),
            (None, None) => {
                if !warned.iter().any(|w| w == name) {
                    eprintln!("WARN[0000] The \"{name}\" variable is not set. Defaulting to a blank string.");
                    warned.push(name.to_string());
                }
            }
        }
    };
    while i < b.len() {
        if b[i] == '$' && i + 1 < b.len() {
            if b[i + 1] == '$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == '{' {
                if let Some(end) = b[i + 2..].iter().position(|&c| c == '}') {
                    let inner: String = b[i + 2..i + 2 + end].iter().collect();
                    if let Some((n, m)) = inner.split_once(":?").or_else(|| inner.split_once('?')) {
                        let v = std::env::var(n)
                            .ok()
                            .or_else(|| env.get(n).cloned())
                            .unwrap_or_default();
                        if v.is_empty() {
                            errors.push(format!("required variable {n} is missing a value: {m}"));
                        }
                        out.push_str(&v);
                    } else if let Some((n, d)) = inner.split_once(":-") {
                        lookup(n, Some((d, true)), &mut out);
                    } else if let Some((n, d)) = inner.split_once('-') {
                        lookup(n, Some((d, false)), &mut out);
                    } else {
                        lookup(&inner, None, &mut out);
                    }
                    i += 3 + end;
                    continue;
                }
            }
            let start = i + 1;
            let mut j = start;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == '_') {
                j += 1;
            }
            if j > start {
                let name: String = b[start..j].iter().collect();
                lookup(&name, None, &mut out);
                i = j;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

struct Loader {
    env: HashMap<String, String>,
    warned: Vec<String>,
    errors: Vec<String>,
}

impl Loader {
    fn interp(&mut self, v: &mut Y) {
        match v {
            Y::String(s) => *s = interpolate(s, &self.env, &mut self.warned, &mut self.errors),
            Y::Sequence(xs) => xs.iter_mut().for_each(|x| self.interp(x)),
            Y::Mapping(m) => m.iter_mut().for_each(|(_, x)| self.interp(x)),
            _ => {}
        }
    }
    /// Parse a file and the files it includes: (file dir, document) in order.
    fn read(&mut self, file: &Path, out: &mut Vec<(PathBuf, Y)>, depth: u32) -> Result<(), String> {
        if depth > 8 {
            return Err("include: too deeply nested".into());
        }
        let text = fs::read_to_string(file).map_err(|e| format!("open {}: {e}", file.display()))?;
        let mut doc: Y =
            serde_yaml::from_str(&text).map_err(|e| format!("yaml: {}: {e}", file.display()))?;
        doc.apply_merge()
            .map_err(|e| format!("yaml: {}: {e}", file.display()))?;
        self.interp(&mut doc);
        let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        if let Some(inc) = doc.get("include").and_then(Y::as_sequence) {
            for i in inc {
                let p = i
                    .as_str()
                    .or_else(|| i.get("path").and_then(Y::as_str))
                    .unwrap_or_default();
                let f = dir.join(p);
                if !f.exists() {
                    return Err(format!("open {}: no such file or directory", f.display()));
                }
                self.read(&f, out, depth + 1)?;
            }
        }
        out.push((dir, doc));
        Ok(())
    }
}

fn strs(v: Option<&Y>) -> Vec<String> {
    match v {
        Some(Y::Sequence(xs)) => xs
            .iter()
            .filter_map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .or_else(|| x.as_u64().map(|n| n.to_string()))
            })
            .collect(),
        Some(Y::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn kv_list(v: Option<&Y>) -> Vec<String> {
    match v {
        Some(Y::Mapping(m)) => m
            .iter()
            .map(|(k, v)| {
                let val = match v {
                    Y::String(s) => s.clone(),
                    Y::Null => String::new(),
                    other => serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                format!("{}={val}", k.as_str().unwrap_or_default())
            })
            .collect(),
        other => strs(other),
    }
}

fn find_file(
    cwd: &Path,
    files: &[String],
    project_dir: Option<&str>,
) -> Result<Vec<PathBuf>, String> {
    if !files.is_empty() {
        return files
            .iter()
            .map(|f| {
                let p = cwd.join(f);
                if p.exists() {
                    Ok(p)
                } else {
                    Err(format!("open {}: no such file or directory", p.display()))
                }
            })
            .collect();
    }
    let dir = project_dir
        .map(|d| cwd.join(d))
        .unwrap_or_else(|| cwd.to_path_buf());
    [
        "compose.yaml",
        "compose.yml",
        "docker-compose.yml",
        "docker-compose.yaml",
    ]
    .iter()
    .map(|n| dir.join(n))
    .find(|p| p.exists())
    .map(|p| vec![p])
    .ok_or_else(|| "no configuration file provided: not found".to_string())
}

/// A string-valued key of a mapping, if it has one.
fn str_at(v: &Y, key: &str) -> Option<String> {
    v.get(key).and_then(Y::as_str).map(str::to_string)
}

pub fn load_project(
    files: &[String],
    project_dir: Option<&str>,
    pname: Option<String>,
    env_file: Option<String>,
) -> Result<Project, String> {
    let cwd =
        std::env::current_dir().map_err(|e| format!("cannot read the current directory: {e}"))?;
    let files = find_file(&cwd, files, project_dir)?;
    let dir = match project_dir {
        Some(d) => cwd.join(d),
        None => files[0].parent().map(Path::to_path_buf).unwrap_or(cwd),
    };
    let env = read_env_file(
        &env_file
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.join(".env")),
    );
    let mut l = Loader {
        env,
        warned: Vec::new(),
        errors: Vec::new(),
    };
    let mut docs = Vec::new();
    for f in &files {
        l.read(f, &mut docs, 0)?;
    }
    if let Some(e) = l.errors.first() {
        return Err(e.clone());
    }
    let mut p = Project {
        name: project_name(pname, &l.env, &docs, &dir),
        dir,
        files,
        networks: Vec::new(),
        volumes: Vec::new(),
        services: Vec::new(),
    };
    for (_, d) in &docs {
        p.declare_networks(d);
        p.declare_volumes(d);
    }
    for (fdir, d) in &docs {
        if let Some(Y::Mapping(m)) = d.get("services") {
            for (k, v) in m {
                let svc = service(&mut p, fdir, k.as_str().unwrap_or_default(), v)?;
                p.services.retain(|s| s.name != svc.name);
                p.services.push(svc);
            }
        }
    }
    Ok(p)
}

/// Compose's precedence: -p, then COMPOSE_PROJECT_NAME (environment, then .env), then the
/// last file's `name:`, then the project directory's name; lowercased, and only the
/// characters a project name may hold.
fn project_name(
    pname: Option<String>,
    env: &HashMap<String, String>,
    docs: &[(PathBuf, Y)],
    dir: &Path,
) -> String {
    let top_name = docs.iter().rev().find_map(|(_, d)| str_at(d, "name"));
    let raw = pname
        .or_else(|| std::env::var("COMPOSE_PROJECT_NAME").ok())
        .or_else(|| env.get("COMPOSE_PROJECT_NAME").cloned())
        .or(top_name)
        .unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
    raw.to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect()
}

impl Project {
    /// A document's top-level `networks:`; a later file's definition replaces an earlier one.
    fn declare_networks(&mut self, d: &Y) {
        let Some(Y::Mapping(m)) = d.get("networks") else {
            return;
        };
        for (k, v) in m {
            let k = k.as_str().unwrap_or_default().to_string();
            let ext = v.get("external").and_then(Y::as_bool).unwrap_or(false);
            let real = str_at(v, "name").unwrap_or_else(|| {
                if ext {
                    k.clone()
                } else {
                    format!("{}_{k}", self.name)
                }
            });
            self.networks.retain(|n| n.0 != k);
            self.networks.push((k, real, ext));
        }
    }

    fn declare_volumes(&mut self, d: &Y) {
        let Some(Y::Mapping(m)) = d.get("volumes") else {
            return;
        };
        for (k, v) in m {
            let k = k.as_str().unwrap_or_default().to_string();
            let real = str_at(v, "name").unwrap_or_else(|| format!("{}_{k}", self.name));
            self.volumes.push((k, real));
        }
    }
}

fn service(p: &mut Project, fdir: &Path, name: &str, v: &Y) -> Result<Service, String> {
    let container = str_at(v, "container_name").unwrap_or_else(|| format!("{}-{name}-1", p.name));
    let env = service_env(fdir, v);
    let volumes = service_volumes(p, fdir, name, v)?;
    let networks = service_networks(p, name, v)?;
    let cmd = match v.get("command") {
        Some(Y::String(s)) => shell_words::split(s).unwrap_or_default(),
        other => strs(other),
    };
    let spec = Job {
        name: Some(container.clone()),
        image: str_at(v, "image").unwrap_or_default(),
        cmd,
        entrypoint: str_at(v, "entrypoint"),
        env,
        volumes,
        publish: strs(v.get("ports")),
        networks,
        aliases: vec![container.clone(), name.to_string()],
        restart: str_at(v, "restart"),
        labels: kv_list(v.get("labels")),
        workdir: str_at(v, "working_dir"),
        hostname: str_at(v, "hostname"),
        detach: true,
        healthcheck: crate::health::Healthcheck::from_compose(v)
            .map_err(|e| format!("service \"{name}\": {e}"))?,
        ..Default::default()
    };
    let hash = crate::util::hex_id(&serde_yaml::to_string(v).unwrap_or_default());
    Ok(Service {
        name: name.to_string(),
        container,
        spec,
        deps: depends_on(v),
        hash,
    })
}

/// The `env_file:` files' variables (each file's sorted by name), then `environment:`,
/// which therefore wins.
fn service_env(fdir: &Path, v: &Y) -> Vec<String> {
    let mut env = Vec::new();
    for f in strs(v.get("env_file")) {
        let m = read_env_file(&fdir.join(&f));
        let mut kv: Vec<(String, String)> = m.into_iter().collect();
        kv.sort();
        env.extend(kv.into_iter().map(|(k, v)| format!("{k}={v}")));
    }
    env.extend(kv_list(v.get("environment")));
    env
}

/// `volumes:` as `docker run -v` takes them: relative paths made absolute from the file's
/// directory, named volumes by their real name.
fn service_volumes(p: &Project, fdir: &Path, name: &str, v: &Y) -> Result<Vec<String>, String> {
    let mut volumes = Vec::new();
    for vol in strs(v.get("volumes")) {
        let (src, rest) = vol.split_once(':').unwrap_or(("", vol.as_str()));
        let src = if src.starts_with('.') || src.starts_with('/') || src.starts_with('~') {
            let abs = fdir.join(src);
            let s = abs.to_string_lossy().replace("/./", "/");
            s.trim_end_matches("/.").to_string()
        } else if src.is_empty() {
            String::new()
        } else {
            let real = p.volumes.iter().find(|x| x.0 == src).map(|x| x.1.clone());
            real.ok_or_else(|| {
                format!(
                    "service \"{name}\" refers to undefined volume {src}: invalid compose project"
                )
            })?
        };
        volumes.push(if src.is_empty() {
            rest.to_string()
        } else {
            format!("{src}:{rest}")
        });
    }
    Ok(volumes)
}

/// The real names of the service's networks; a service that names none is on the
/// project's `default` network, which compose creates even when no file declares it.
fn service_networks(p: &mut Project, name: &str, v: &Y) -> Result<Vec<String>, String> {
    let nets: Vec<String> = match v.get("networks") {
        Some(Y::Mapping(m)) => m
            .keys()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect(),
        other => strs(other),
    };
    let nets = if nets.is_empty() {
        vec!["default".to_string()]
    } else {
        nets
    };
    let mut networks = Vec::new();
    for n in nets {
        if n == "default" && !p.networks.iter().any(|x| x.0 == "default") {
            p.networks
                .push(("default".into(), format!("{}_default", p.name), false));
        }
        let real = p.networks.iter().find(|x| x.0 == n).map(|x| x.1.clone());
        networks.push(real.ok_or_else(|| {
            format!("service \"{name}\" refers to undefined network {n}: invalid compose project")
        })?);
    }
    Ok(networks)
}

/// (service, condition) pairs; the short list form means `service_started`.
fn depends_on(v: &Y) -> Vec<(String, String)> {
    match v.get("depends_on") {
        Some(Y::Mapping(m)) => m
            .iter()
            .map(|(k, c)| {
                (
                    k.as_str().unwrap_or_default().to_string(),
                    c.get("condition")
                        .and_then(Y::as_str)
                        .unwrap_or("service_started")
                        .to_string(),
                )
            })
            .collect(),
        other => strs(other)
            .into_iter()
            .map(|s| (s, "service_started".to_string()))
            .collect(),
    }
}
