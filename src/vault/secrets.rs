//! Where vault passwords come from, as Ansible's options say: `--vault-password-file FILE`
//! (its content, whitespace stripped; or, when executable, what it prints),
//! `--vault-id [LABEL@]SOURCE` (SOURCE a file, an executable, or `prompt`; an executable
//! named `*-client*` is asked `--vault-id LABEL`) and `--ask-vault-pass`. (The command line
//! takes `ANSIBLE_VAULT_PASSWORD_FILE` for `--vault-password-file` when it is not given.)

use std::path::{Path, PathBuf};
use std::process::Command;

use super::VaultSecret;
use crate::diagnostic::Diagnostic;

/// The vault options of the command line.
#[derive(Debug, Clone, Default)]
pub struct VaultOptions {
    /// `--vault-id`, as given.
    pub ids: Vec<String>,
    /// `--vault-password-file` (or `ANSIBLE_VAULT_PASSWORD_FILE`).
    pub password_files: Vec<PathBuf>,
    /// `--ask-vault-pass`.
    pub ask: bool,
}

const DEFAULT_LABEL: &str = "default";

/// Reads every password the options name, in Ansible's order: `--vault-id`s, then
/// password files, then the prompt.
pub fn load_secrets(opts: &VaultOptions) -> Result<Vec<VaultSecret>, Diagnostic> {
    let mut secrets = Vec::new();
    for id in &opts.ids {
        let (label, source) = match id.split_once('@') {
            Some((label, source)) => (label, source),
            None => (DEFAULT_LABEL, id.as_str()),
        };
        let place = format!("--vault-id {id}");
        let password = if source == "prompt" {
            prompt(&format!("Vault password ({label}): "), &place)?
        } else {
            from_source(Path::new(source), label, &place)?
        };
        secrets.push(VaultSecret::new(label, password));
    }
    for file in &opts.password_files {
        let place = format!("--vault-password-file {}", file.display());
        secrets.push(VaultSecret::new(
            DEFAULT_LABEL,
            from_source(file, DEFAULT_LABEL, &place)?,
        ));
    }
    if opts.ask {
        secrets.push(VaultSecret::new(
            DEFAULT_LABEL,
            prompt("Vault password: ", "--ask-vault-pass")?,
        ));
    }
    Ok(secrets)
}

fn problem(place: &str, message: String) -> Diagnostic {
    Diagnostic::new(Path::new("<command line>"), place, message)
}

/// A password file's content, or what an executable one prints.
fn from_source(path: &Path, label: &str, place: &str) -> Result<Vec<u8>, Diagnostic> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| problem(place, format!("cannot read the vault password file: {e}")))?;
    let password = if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
        run(path, label, place)?
    } else {
        let bytes = std::fs::read(path)
            .map_err(|e| problem(place, format!("cannot read the vault password file: {e}")))?;
        bytes.trim_ascii().to_vec()
    };
    if password.is_empty() {
        return Err(problem(place, "the vault password is empty".into()));
    }
    Ok(password)
}

fn run(path: &Path, label: &str, place: &str) -> Result<Vec<u8>, Diagnostic> {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut command = Command::new(&absolute);
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if stem.ends_with("-client") {
        command.args(["--vault-id", label]);
    }
    let out = command
        .output()
        .map_err(|e| problem(place, format!("cannot run the vault password script: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut d = problem(
            place,
            format!("the vault password script failed ({})", out.status),
        );
        if !stderr.trim().is_empty() {
            d = d.hint(format!("its stderr: {}", stderr.trim()));
        }
        return Err(d);
    }
    let mut password = out.stdout;
    while password.last().is_some_and(|b| matches!(b, b'\r' | b'\n')) {
        password.pop();
    }
    while password.first().is_some_and(|b| matches!(b, b'\r' | b'\n')) {
        password.remove(0);
    }
    Ok(password)
}

fn prompt(text: &str, place: &str) -> Result<Vec<u8>, Diagnostic> {
    let answer = rpassword::prompt_password(text)
        .map_err(|e| problem(place, format!("cannot ask for the vault password: {e}")))?;
    let answer = answer.trim();
    if answer.is_empty() {
        return Err(problem(place, "the vault password is empty".into()));
    }
    Ok(answer.as_bytes().to_vec())
}
