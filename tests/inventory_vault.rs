//! Ansible Vault in inventories, on files `ansible-vault` makes in each test: whole
//! encrypted `group_vars` files and `!vault` values from `encrypt_string`, with and without
//! vault ids; every way of giving the password; wrong passwords and tampered files refused
//! before any host is contacted; decrypted values redacted.
//!
//! Needs `ansible-vault` and `ansible-inventory` (ansible-core, installed by .ci/run).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fleetup::inventory;
use fleetup::vault::{load_secrets, VaultOptions};
use serde_json::json;

const FLEETUP: &str = env!("CARGO_BIN_EXE_fleetup");

fn ansible_vault(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("ansible-vault")
        .args(args)
        .current_dir(dir)
        .env("ANSIBLE_CONFIG", dir.join("none.cfg"))
        .env("ANSIBLE_HOME", dir.join(".ansible"))
        .output()
        .expect("ansible-vault (ansible-core) must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// An inventory with an encrypted `group_vars/all/vault.yml` (password `hunter2`) and a
/// `!vault` value under the vault id `prod` (password `prod-pass`): a fresh copy of one
/// made once by `ansible-vault` (each run of it costs half a second).
fn vaulted_inventory() -> tempfile::TempDir {
    static MADE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let made = MADE.get_or_init(make_vaulted_inventory);
    let dir = tempfile::tempdir().unwrap();
    copy_tree(made.path(), dir.path());
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn make_vaulted_inventory() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(&d.join("pw"), "hunter2\n");
    write(&d.join("prod-pw"), "prod-pass");
    write(
        &d.join("hosts"),
        "[web]\nw1\nw2\n[db]\nd1 ansible_host=192.0.2.7\n",
    );
    write(&d.join("group_vars/all/plain.yml"), "region: eu\n");
    write(
        &d.join("group_vars/all/vault.yml"),
        "db_password: s3cret-db\napi:\n  token: tok-123\nport: 5432\n",
    );
    ansible_vault(
        d,
        &[
            "encrypt",
            "--vault-password-file",
            "pw",
            "group_vars/all/vault.yml",
        ],
    );
    let value = ansible_vault(
        d,
        &[
            "encrypt_string",
            "--vault-id",
            "prod@prod-pw",
            "labelled-secret",
            "--name",
            "db_user",
        ],
    );
    write(
        &d.join("group_vars/db.yml"),
        &format!("{value}plain: text\n"),
    );
    dir
}

fn load(dir: &Path, opts: VaultOptions) -> Result<inventory::Inventory, String> {
    let secrets = load_secrets(&opts).map_err(|e| e.to_string())?;
    inventory::load(&[dir.join("hosts")], &secrets).map_err(|e| e.to_string())
}

fn both_passwords(dir: &Path) -> VaultOptions {
    VaultOptions {
        ids: vec![format!("prod@{}", dir.join("prod-pw").display())],
        password_files: vec![dir.join("pw")],
        ask: false,
    }
}

#[test]
fn encrypted_files_and_values_are_decrypted_and_kept_secret() {
    let dir = vaulted_inventory();
    let inv = load(dir.path(), both_passwords(dir.path())).unwrap();
    let d1 = inv.host_vars("d1");
    assert_eq!(d1["db_password"], json!("s3cret-db"));
    assert_eq!(d1["api"], json!({"token": "tok-123"}));
    assert_eq!(d1["port"], json!(5432));
    assert_eq!(d1["db_user"], json!("labelled-secret"));
    assert_eq!(d1["region"], json!("eu"));
    for secret in ["s3cret-db", "tok-123", "labelled-secret"] {
        assert!(inv.secret_values().iter().any(|s| s == secret), "{secret}");
    }
    assert!(!inv.secret_values().iter().any(|s| s == "eu" || s == "text"));
}

#[test]
fn the_passwords_come_from_every_source_ansible_takes() {
    let dir = vaulted_inventory();
    let d = dir.path();
    // An executable password file prints the password; a `-client` script is asked for
    // the vault id's.
    let script = d.join("pass.sh");
    write(&script, "#!/bin/sh\necho hunter2\n");
    let client = d.join("vault-client.sh");
    write(
        &client,
        "#!/bin/sh\n[ \"$1\" = --vault-id ] && [ \"$2\" = prod ] && echo prod-pass\n",
    );
    for p in [&script, &client] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let opts = VaultOptions {
        ids: vec![
            format!("prod@{}", client.display()),
            script.display().to_string(),
        ],
        password_files: vec![],
        ask: false,
    };
    assert_eq!(
        load(d, opts).unwrap().host_vars("d1")["db_user"],
        json!("labelled-secret")
    );
    // Through the command line: ANSIBLE_VAULT_PASSWORD_FILE stands for --vault-password-file.
    let o = fleetup(
        d,
        &[
            "inventory",
            "-i",
            "hosts",
            "--host",
            "d1",
            "--vault-id",
            "prod@prod-pw",
        ],
        &[("ANSIBLE_VAULT_PASSWORD_FILE", "pw")],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn fleetup(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(FLEETUP)
        .args(args)
        .current_dir(dir)
        .env_remove("ANSIBLE_VAULT_PASSWORD_FILE")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn wrong_passwords_and_tampered_files_stop_before_any_host_is_contacted() {
    let dir = vaulted_inventory();
    let d = dir.path();
    write(&d.join("bad-pw"), "hunter3");
    let opts = VaultOptions {
        ids: vec![],
        password_files: vec![d.join("bad-pw")],
        ask: false,
    };
    let e = load(d, opts).unwrap_err();
    assert!(
        e.contains(
            "group_vars/all/vault.yml: vault-encrypted file: no vault password given opens it"
        ),
        "{e}"
    );
    assert!(e.contains("group_vars/db.yml:2:11: db_user: vault-encrypted value: no vault password given opens it"), "{e}");
    let e = load(d, VaultOptions::default()).unwrap_err();
    assert!(
        e.contains("encrypted, but no vault password was given"),
        "{e}"
    );
    // One byte of the ciphertext changed (the last hex digit: its pair still spells a hex
    // digit, so only the HMAC can tell).
    let file = d.join("group_vars/all/vault.yml");
    let text = std::fs::read_to_string(&file).unwrap();
    let at = text.rfind(|c: char| c.is_ascii_hexdigit()).unwrap();
    let mut tampered = text.clone();
    let flipped = if &text[at..=at] == "1" { "2" } else { "1" };
    tampered.replace_range(at..=at, flipped);
    std::fs::write(&file, tampered).unwrap();
    let e = load(d, both_passwords(d)).unwrap_err();
    assert!(
        e.contains("vault.yml: vault-encrypted file: no vault password given opens it"),
        "{e}"
    );
    // A run: exit 5 at once (d1's address answers nothing, so a contact would hang).
    let playbook = Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/simplelogin-upgrade.yml");
    std::fs::write(
        d.join("hosts"),
        "[simplelogin]\nd1 ansible_host=192.0.2.7\n",
    )
    .unwrap();
    let o = fleetup(
        d,
        &[
            "run",
            "-i",
            "hosts",
            playbook.to_str().unwrap(),
            "-e",
            "sl_version=v4.66.1",
            "--vault-password-file",
            "pw",
            "--vault-id",
            "prod@prod-pw",
        ],
        &[],
    );
    assert_eq!(
        o.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("vault-encrypted file"));
}

/// `fleetup inventory --list` diffs clean against `ansible-inventory --list` on `!vault`
/// values (both show the ciphertext); values of encrypted files, which Ansible prints in
/// clear, fleetup shows redacted.
#[test]
fn list_shows_vault_values_as_ansible_does() {
    let dir = vaulted_inventory();
    let d = dir.path();
    let run = |program: &str, args: &[&str]| -> String {
        let o = Command::new(program)
            .args(args)
            .current_dir(d)
            .env("ANSIBLE_CONFIG", d.join("none.cfg"))
            .env("ANSIBLE_HOME", d.join(".ansible"))
            .env_remove("ANSIBLE_VAULT_PASSWORD_FILE")
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let args = [
        "-i",
        "hosts",
        "--list",
        "--vault-password-file",
        "pw",
        "--vault-id",
        "prod@prod-pw",
    ];
    let ours = run(FLEETUP, &[&["inventory"], &args[..]].concat());
    let theirs = run("ansible-inventory", &args);
    let redacted = theirs
        .replace("\"s3cret-db\"", "\"********\"")
        .replace("\"tok-123\"", "\"********\"");
    assert_ne!(redacted, theirs);
    assert_eq!(ours, redacted);
    assert!(!ours.contains("labelled-secret") && ours.contains("$ANSIBLE_VAULT;1.2;AES256;prod"));
}

#[test]
fn decrypted_values_are_redacted_in_the_play() {
    let dir = vaulted_inventory();
    let d = dir.path();
    std::fs::write(
        d.join("hosts"),
        "[simplelogin]\nd1 ansible_host=192.0.2.7\n",
    )
    .unwrap();
    std::fs::rename(
        d.join("group_vars/db.yml"),
        d.join("group_vars/simplelogin.yml"),
    )
    .unwrap();
    let inputs = fleetup::play::PlayInputs {
        inventories: vec![d.join("hosts")],
        playbook: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("playbooks/simplelogin-upgrade.yml"),
        extra_vars: vec!["sl_version=v4.66.1".into()],
        vault: both_passwords(d),
        ..Default::default()
    };
    let play = fleetup::play::prepare(&inputs).unwrap();
    let shown = play
        .redactor
        .text("user labelled-secret, api tok-123, region eu");
    assert_eq!(shown, "user ********, api ********, region eu");
}
