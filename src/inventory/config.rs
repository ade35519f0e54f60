//! Where the inventory comes from when `-i` is not given, as Ansible decides it:
//! `ANSIBLE_INVENTORY`, else the `inventory` of `[defaults]` in the ansible.cfg Ansible
//! would read (`ANSIBLE_CONFIG`, `./ansible.cfg` unless the current folder is writable by
//! anyone, `~/.ansible.cfg`, `/etc/ansible/ansible.cfg`: the first that exists), else
//! Ansible's own default `/etc/ansible/hosts` when it exists. Both hold a comma-separated
//! list of paths; in ansible.cfg they are relative to the file's folder.

use std::path::{Path, PathBuf};

use crate::diagnostic::Diagnostic;
use crate::vault::VaultOptions;

/// What the environment says, read at the edge (the process's own in [`Environment::of_process`]).
pub struct Environment {
    pub ansible_inventory: Option<String>,
    pub ansible_vault_identity_list: Option<String>,
    pub ansible_config: Option<PathBuf>,
    pub cwd: PathBuf,
    pub home: Option<PathBuf>,
}

impl Environment {
    pub fn of_process() -> Environment {
        Environment {
            ansible_inventory: std::env::var("ANSIBLE_INVENTORY").ok(),
            ansible_vault_identity_list: std::env::var("ANSIBLE_VAULT_IDENTITY_LIST").ok(),
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

/// `inventory` (or its old name `hostfile`) in `[defaults]`.
pub(super) fn defaults_inventory(text: &str) -> Option<String> {
    defaults_value(text, &["inventory", "hostfile"])
}

/// The value of the first of `keys` (a name and its older aliases) set in `[defaults]`,
/// as Python's configparser reads it: `key = value` or `key: value`, names in any case,
/// `#` and `;` comment lines, indented lines continuing a value.
fn defaults_value(text: &str, keys: &[&str]) -> Option<String> {
    let mut section = String::new();
    // (the key's rank in `keys`, its value)
    let mut found: Option<(usize, String)> = None;
    let mut continuing = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with(['#', ';']) {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let (true, Some((_, v))) = (continuing, &mut found) {
                v.push('\n');
                v.push_str(trimmed);
            }
            continue;
        }
        continuing = false;
        if let Some(name) = trimmed.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = name.trim().to_string();
            continue;
        }
        let Some(i) = trimmed.find(['=', ':']) else {
            continue;
        };
        let key = trimmed[..i].trim().to_ascii_lowercase();
        let Some(rank) = keys.iter().position(|k| *k == key) else {
            continue;
        };
        if section == "defaults" && found.as_ref().is_none_or(|(r, _)| rank <= *r) {
            found = Some((rank, trimmed[i + 1..].trim().to_string()));
            continuing = true;
        }
    }
    found.map(|(_, v)| v).filter(|v| !v.is_empty())
}

/// The vault options with what Ansible's configuration adds to the command line's: the
/// ids of `ANSIBLE_VAULT_IDENTITY_LIST` (else ansible.cfg's `vault_identity_list`) before
/// those given, and ansible.cfg's `vault_password_file` when no password file is given
/// (`ANSIBLE_VAULT_PASSWORD_FILE` is the command line's own default).
pub fn vault_options(given: &VaultOptions, env: &Environment) -> Result<VaultOptions, Diagnostic> {
    let cfg = match config_file(env) {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Diagnostic::new(&path, "", format!("cannot read: {e}")))?;
            Some((path, text))
        }
        None => None,
    };
    let cfg_value = |keys: &[&str]| cfg.as_ref().and_then(|(_, t)| defaults_value(t, keys));
    let mut opts = given.clone();
    let ids = env
        .ansible_vault_identity_list
        .clone()
        .or_else(|| cfg_value(&["vault_identity_list"]));
    let mut all_ids: Vec<String> = ids
        .iter()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(String::from)
        .collect();
    all_ids.append(&mut opts.ids);
    opts.ids = all_ids;
    if opts.password_files.is_empty() {
        if let (Some(file), Some((path, _))) = (cfg_value(&["vault_password_file"]), &cfg) {
            let base = path.parent().unwrap_or(Path::new("."));
            opts.password_files = path_list(&file, base, env.home.as_deref());
        }
    }
    Ok(opts)
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
            ansible_vault_identity_list: None,
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
    fn vault_passwords_ansible_is_configured_with_are_added() {
        let dir = tempfile::tempdir().unwrap();
        let mut e = env(dir.path());
        write(
            &e.cwd.join("ansible.cfg"),
            "[defaults]\nvault_password_file = ~/.vault_pass\nvault_identity_list = dev@dev.txt, prod@prompt\n",
        );
        let given = VaultOptions {
            ids: vec!["x@x.txt".into()],
            ..Default::default()
        };
        let opts = vault_options(&given, &e).unwrap();
        assert_eq!(opts.ids, ["dev@dev.txt", "prod@prompt", "x@x.txt"]);
        assert_eq!(opts.password_files, [dir.path().join("home/.vault_pass")]);
        e.ansible_vault_identity_list = Some("env@e.txt".into());
        let given = VaultOptions {
            password_files: vec!["given".into()],
            ..Default::default()
        };
        let opts = vault_options(&given, &e).unwrap();
        assert_eq!(opts.ids, ["env@e.txt"]);
        assert_eq!(opts.password_files, [PathBuf::from("given")]);
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
