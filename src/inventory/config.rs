//! Where the inventory comes from when `-i` is not given, as Ansible decides it:
//! `ANSIBLE_INVENTORY`, else the `inventory` of `[defaults]` in the ansible.cfg Ansible
//! would read (`ANSIBLE_CONFIG`, `./ansible.cfg` unless the current folder is writable by
//! anyone, `~/.ansible.cfg`, `/etc/ansible/ansible.cfg`: the first that exists), else
//! Ansible's own default `/etc/ansible/hosts` when it exists. Both hold a comma-separated
//! list of paths; in ansible.cfg they are relative to the file's folder.

use std::path::{Path, PathBuf};

use crate::diagnostic::Diagnostic;

/// What the environment says, read at the edge (the process's own in [`Environment::of_process`]).
pub struct Environment {
    pub ansible_inventory: Option<String>,
    pub ansible_config: Option<PathBuf>,
    pub cwd: PathBuf,
    pub home: Option<PathBuf>,
}

impl Environment {
    pub fn of_process() -> Environment {
        Environment {
            ansible_inventory: std::env::var("ANSIBLE_INVENTORY").ok(),
            ansible_config: std::env::var_os("ANSIBLE_CONFIG").map(PathBuf::from),
            cwd: std::env::current_dir().unwrap_or_default(),
            home: std::env::var_os("HOME").map(PathBuf::from),
        }
    }
}

const DEFAULT_HOSTS: &str = "/etc/ansible/hosts";
const SYSTEM_CFG: &str = "/etc/ansible/ansible.cfg";

/// The inventories to read: those given with `-i`, else Ansible's configured ones. Empty
/// when nothing is configured either.
pub fn sources(given: &[PathBuf], env: &Environment) -> Result<Vec<PathBuf>, Diagnostic> {
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    if let Some(list) = env
        .ansible_inventory
        .as_deref()
        .filter(|l| !l.trim().is_empty())
    {
        return Ok(path_list(list, &env.cwd, env.home.as_deref()));
    }
    if let Some(cfg) = config_file(env) {
        let text = std::fs::read_to_string(&cfg)
            .map_err(|e| Diagnostic::new(&cfg, "", format!("cannot read: {e}")))?;
        if let Some(list) = defaults_inventory(&text) {
            let base = cfg.parent().unwrap_or(Path::new("."));
            return Ok(path_list(&list, base, env.home.as_deref()));
        }
    }
    Ok(if Path::new(DEFAULT_HOSTS).exists() {
        vec![PathBuf::from(DEFAULT_HOSTS)]
    } else {
        Vec::new()
    })
}

/// The ansible.cfg Ansible reads (`find_ini_config_file`).
fn config_file(env: &Environment) -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(p) = &env.ansible_config {
        let p = expand_home(p, env.home.as_deref());
        candidates.push(if p.is_dir() { p.join("ansible.cfg") } else { p });
    }
    if !world_writable(&env.cwd) {
        candidates.push(env.cwd.join("ansible.cfg"));
    }
    if let Some(home) = &env.home {
        candidates.push(home.join(".ansible.cfg"));
    }
    candidates.push(PathBuf::from(SYSTEM_CFG));
    candidates.into_iter().find(|p| p.is_file())
}

/// A folder anyone may write to: Ansible ignores an ansible.cfg there (someone else could
/// have put it there).
fn world_writable(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o002 != 0)
}

/// `inventory` (or its old name `hostfile`) in `[defaults]`, as Python's configparser
/// reads it: `key = value` or `key: value`, names in any case, `#` and `;` comment lines,
/// indented lines continuing a value.
pub(super) fn defaults_inventory(text: &str) -> Option<String> {
    let mut section = String::new();
    let mut found: Option<(String, String)> = None;
    let mut last_key: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with(['#', ';']) {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let (Some(key), Some((k, v))) = (&last_key, &mut found) {
                if key == k {
                    v.push('\n');
                    v.push_str(trimmed);
                }
            }
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = name.trim().to_string();
            last_key = None;
            continue;
        }
        let Some(i) = trimmed.find(['=', ':']) else {
            continue;
        };
        let key = trimmed[..i].trim().to_ascii_lowercase();
        last_key = Some(key.clone());
        if section == "defaults" && (key == "inventory" || key == "hostfile") {
            // `inventory` wins over the deprecated `hostfile`, wherever each stands.
            if key == "inventory" || found.as_ref().is_none_or(|(k, _)| k == "hostfile") {
                found = Some((key, trimmed[i + 1..].trim().to_string()));
            }
        }
    }
    found.map(|(_, v)| v).filter(|v| !v.is_empty())
}

/// A comma-separated list of paths, `~` expanded, relative ones taken from `base`.
fn path_list(list: &str, base: &Path, home: Option<&Path>) -> Vec<PathBuf> {
    list.split([',', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| base.join(expand_home(Path::new(p), home)))
        .collect()
}

fn expand_home(path: &Path, home: Option<&Path>) -> PathBuf {
    match (path.strip_prefix("~"), home) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(dir: &Path) -> Environment {
        Environment {
            ansible_inventory: None,
            ansible_config: None,
            cwd: dir.join("project"),
            home: Some(dir.join("home")),
        }
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn reads_inventory_from_defaults_as_configparser_does() {
        let cfg = "[ssh_connection]\ninventory = wrong\n[defaults]\n# inventory = commented\nHostFile = old\nInventory: hosts.ini, ~/more.yml\nforks=5\n";
        assert_eq!(
            defaults_inventory(cfg).as_deref(),
            Some("hosts.ini, ~/more.yml")
        );
        assert_eq!(
            defaults_inventory("[defaults]\nhostfile=old\n").as_deref(),
            Some("old")
        );
        assert_eq!(defaults_inventory("[defaults]\nforks=5\n"), None);
    }

    #[test]
    fn the_first_source_ansible_would_use_wins() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut e = env(d);
        let given = [PathBuf::from("given.yml")];
        assert_eq!(sources(&given, &e).unwrap(), given);
        write(
            &d.join("home/.ansible.cfg"),
            "[defaults]\ninventory = ~/inv/home.ini\n",
        );
        assert_eq!(sources(&[], &e).unwrap(), [d.join("home/inv/home.ini")]);
        write(
            &d.join("project/ansible.cfg"),
            "[defaults]\ninventory = hosts, staging.yml\n",
        );
        assert_eq!(
            sources(&[], &e).unwrap(),
            [d.join("project/hosts"), d.join("project/staging.yml")]
        );
        write(
            &d.join("elsewhere/ansible.cfg"),
            "[defaults]\ninventory = /abs/inv\n",
        );
        e.ansible_config = Some(d.join("elsewhere"));
        assert_eq!(sources(&[], &e).unwrap(), [PathBuf::from("/abs/inv")]);
        e.ansible_inventory = Some("a.yml,b.ini".into());
        assert_eq!(
            sources(&[], &e).unwrap(),
            [d.join("project/a.yml"), d.join("project/b.ini")]
        );
    }

    #[test]
    fn an_ansible_cfg_in_a_world_writable_folder_is_ignored() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let e = env(dir.path());
        write(
            &e.cwd.join("ansible.cfg"),
            "[defaults]\ninventory = planted\n",
        );
        std::fs::set_permissions(&e.cwd, std::fs::Permissions::from_mode(0o777)).unwrap();
        let found = sources(&[], &e).unwrap();
        assert!(!found.contains(&e.cwd.join("planted")), "{found:?}");
    }
}
