//! Public key authentication, in OpenSSH's order: the identity files the inventory (or the
//! ssh config) names, then the keys of ssh-agent, then the default keys of `~/.ssh`.
//!
//! Decrypted keys are cached for the whole run, so an encrypted key's passphrase is read
//! (or prompted for) once, not once per host.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client::Handle;
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg};

use super::handler::ClientHandler;
use super::known_hosts::fingerprint;

/// Why a key file could not be used.
#[derive(Debug, Clone)]
pub(crate) enum KeyError {
    /// Encrypted, and no passphrase could be had.
    NeedsPassphrase(String),
    Other(String),
}

impl KeyError {
    pub(crate) fn detail(&self) -> &str {
        match self {
            KeyError::NeedsPassphrase(s) | KeyError::Other(s) => s,
        }
    }
}

/// Loads private keys once per run and keeps them.
pub(crate) struct KeyStore {
    cache: tokio::sync::Mutex<HashMap<PathBuf, Result<Arc<PrivateKey>, KeyError>>>,
    passphrase_env: Option<String>,
    prompt_allowed: bool,
}

impl KeyStore {
    pub(crate) fn new(passphrase_env: Option<String>, prompt_allowed: bool) -> Self {
        KeyStore {
            cache: tokio::sync::Mutex::new(HashMap::new()),
            passphrase_env,
            prompt_allowed,
        }
    }

    /// Loads a key, asking for its passphrase if it is encrypted: from the environment
    /// variable named by `--passphrase-env`, else on the terminal when `prompt` and stdin is
    /// one. The lock is held across the prompt so that concurrent connections ask once.
    pub(crate) async fn load(
        &self,
        path: &Path,
        prompt: bool,
    ) -> Result<Arc<PrivateKey>, KeyError> {
        let mut cache = self.cache.lock().await;
        if let Some(r) = cache.get(path) {
            // A key skipped for want of a passphrase may still be prompted for later.
            if !(prompt && matches!(r, Err(KeyError::NeedsPassphrase(_)))) {
                return r.clone();
            }
        }
        let result = self
            .load_uncached(path.to_path_buf(), prompt && self.prompt_allowed)
            .await;
        cache.insert(path.to_path_buf(), result.clone());
        result
    }

    async fn load_uncached(
        &self,
        path: PathBuf,
        prompt: bool,
    ) -> Result<Arc<PrivateKey>, KeyError> {
        let env = self.passphrase_env.clone();
        // Reading, and above all decrypting (bcrypt KDF), are slow: off the runtime.
        let joined =
            tokio::task::spawn_blocking(move || load_key_blocking(&path, env, prompt)).await;
        match joined {
            Ok(r) => r.map(Arc::new),
            Err(e) => Err(KeyError::Other(format!("key loading task failed: {e}"))),
        }
    }
}

fn load_key_blocking(
    path: &Path,
    passphrase_env: Option<String>,
    prompt: bool,
) -> Result<PrivateKey, KeyError> {
    check_permissions(path)?;
    let text = std::fs::read_to_string(path).map_err(|e| KeyError::Other(e.to_string()))?;
    match russh::keys::decode_secret_key(&text, None) {
        Ok(k) => return Ok(k),
        Err(russh::keys::Error::KeyIsEncrypted) => {}
        Err(e) => return Err(KeyError::Other(e.to_string())),
    }
    if let Some(var) = &passphrase_env {
        if let Ok(pass) = std::env::var(var) {
            return russh::keys::decode_secret_key(&text, Some(&pass)).map_err(|e| {
                KeyError::Other(format!(
                    "the key is encrypted and the passphrase in ${var} does not open it ({e})"
                ))
            });
        }
    }
    if prompt && std::io::stdin().is_terminal() {
        let pass =
            rpassword::prompt_password(format!("Enter passphrase for key {}: ", path.display()))
                .map_err(|e| KeyError::Other(format!("cannot read the passphrase: {e}")))?;
        return russh::keys::decode_secret_key(&text, Some(&pass))
            .map_err(|e| KeyError::Other(format!("wrong passphrase ({e})")));
    }
    Err(KeyError::NeedsPassphrase(match passphrase_env {
        Some(var) => format!(
            "the key is encrypted and ${var} is not set (stdin is not a terminal, so fleetup cannot ask); export the passphrase in ${var}, or add the key to ssh-agent"
        ),
        None => "the key is encrypted: name an environment variable holding its passphrase with --passphrase-env, run from a terminal to be asked, or add the key to ssh-agent".to_string(),
    }))
}

/// OpenSSH refuses a private key of the user's own that others may read or write
/// (`sshkey_perm_ok`): anyone who can read it is root on every host it opens. fleetup
/// refuses it the same way, before reading it, with the same remedy.
fn check_permissions(path: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| KeyError::Other(e.to_string()))?;
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let mode = meta.mode() & 0o777;
    if meta.uid() == uid && mode & 0o077 != 0 {
        return Err(KeyError::Other(format!(
            "permissions {mode:04o} for {0} are too open: a private key must not be accessible by others, so it is ignored (chmod 600 {0})",
            path.display()
        )));
    }
    Ok(())
}

/// Where authentication looks for keys.
pub(crate) struct AuthSources<'a> {
    pub identity_files: &'a [PathBuf],
    pub agent_socket: Option<&'a Path>,
    pub default_keys: &'a [PathBuf],
}

pub(crate) enum AuthOutcome {
    Success,
    Failed {
        tried: Vec<String>,
    },
    /// An identity file the inventory or config named cannot be used.
    KeyUnusable {
        path: PathBuf,
        detail: String,
    },
}

/// Tries every source in order until the server accepts one.
pub(crate) async fn authenticate(
    handle: &mut Handle<ClientHandler>,
    user: &str,
    keys: &KeyStore,
    sources: &AuthSources<'_>,
) -> Result<AuthOutcome, russh::Error> {
    let mut tried = Vec::new();
    let mut offered: Vec<russh::keys::PublicKey> = Vec::new();
    let mut rsa_hash: Option<Option<HashAlg>> = None;

    for path in sources.identity_files {
        let key = match keys.load(path, true).await {
            Ok(k) => k,
            Err(e) => {
                return Ok(AuthOutcome::KeyUnusable {
                    path: path.clone(),
                    detail: e.detail().to_string(),
                })
            }
        };
        tried.push(format!(
            "key file {} ({})",
            path.display(),
            fingerprint(key.public_key())
        ));
        offered.push(key.public_key().clone());
        if try_key(handle, user, key, &mut rsa_hash).await? {
            return Ok(AuthOutcome::Success);
        }
    }

    if let Some(sock) = sources.agent_socket {
        match AgentClient::connect_uds(sock).await {
            Ok(mut agent) => match agent.request_identities().await {
                Ok(ids) => {
                    if ids.is_empty() {
                        tried.push(format!("ssh-agent at {} (it holds no key)", sock.display()));
                    }
                    for id in ids {
                        let AgentIdentity::PublicKey { key, comment } = id else {
                            continue; // certificates are not supported
                        };
                        if offered.contains(&key) {
                            continue;
                        }
                        tried.push(format!("agent key {comment} ({})", fingerprint(&key)));
                        offered.push(key.clone());
                        let hash = if key.algorithm().is_rsa() {
                            rsa_hash_for(handle, &mut rsa_hash).await
                        } else {
                            None
                        };
                        match handle
                            .authenticate_publickey_with(user, key, hash, &mut agent)
                            .await
                        {
                            Ok(r) if r.success() => return Ok(AuthOutcome::Success),
                            Ok(_) => {}
                            Err(russh::AgentAuthError::Send(_)) => {
                                return Err(russh::Error::SendError)
                            }
                            Err(russh::AgentAuthError::Key(e)) => {
                                if let Some(last) = tried.last_mut() {
                                    last.push_str(&format!(": the agent could not sign ({e})"));
                                }
                            }
                        }
                    }
                }
                Err(e) => tried.push(format!("ssh-agent at {} (no answer: {e})", sock.display())),
            },
            Err(e) => tried.push(format!(
                "ssh-agent at {} (cannot connect: {e})",
                sock.display()
            )),
        }
    }

    for path in sources.default_keys {
        if !path.exists() {
            continue;
        }
        let key = match keys.load(path, false).await {
            Ok(k) => k,
            Err(e) => {
                tried.push(format!(
                    "default key {} (skipped: {})",
                    path.display(),
                    e.detail()
                ));
                continue;
            }
        };
        if offered.contains(key.public_key()) {
            continue;
        }
        tried.push(format!(
            "default key {} ({})",
            path.display(),
            fingerprint(key.public_key())
        ));
        offered.push(key.public_key().clone());
        if try_key(handle, user, key, &mut rsa_hash).await? {
            return Ok(AuthOutcome::Success);
        }
    }
    Ok(AuthOutcome::Failed { tried })
}

async fn try_key(
    handle: &mut Handle<ClientHandler>,
    user: &str,
    key: Arc<PrivateKey>,
    rsa_hash: &mut Option<Option<HashAlg>>,
) -> Result<bool, russh::Error> {
    let hash = if key.algorithm().is_rsa() {
        rsa_hash_for(handle, rsa_hash).await
    } else {
        None
    };
    let r = handle
        .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key, hash))
        .await?;
    Ok(r.success())
}

/// rsa-sha2-512 or -256 as the server announces (asked once per session: it may wait for
/// the server's extension info).
async fn rsa_hash_for(
    handle: &Handle<ClientHandler>,
    cached: &mut Option<Option<HashAlg>>,
) -> Option<HashAlg> {
    if let Some(h) = cached {
        return *h;
    }
    let h = handle
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten();
    *cached = Some(h);
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keys_readable_by_others_are_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id_test");
        // Not even a key: the permissions are refused before the contents are looked at.
        std::fs::write(&path, "not a key").unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = load_key_blocking(&path, None, false).unwrap_err();
            let detail = err.detail();
            assert!(
                detail.contains(&format!("permissions {mode:04o}")),
                "{detail}"
            );
            assert!(
                detail.contains(&format!("chmod 600 {}", path.display())),
                "{detail}"
            );
        }
        for mode in [0o600, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = load_key_blocking(&path, None, false).unwrap_err();
            assert!(!err.detail().contains("too open"), "{}", err.detail());
        }
    }
}
