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
use super::user_cert;

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
    let mode = meta.mode() & 0o777;
    if meta.uid() == nix::unistd::getuid().as_raw() && mode & 0o077 != 0 {
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
    /// `CertificateFile`s: offered with the identity (file or agent key) they certify.
    pub certificate_files: &'a [PathBuf],
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
    let mut offer = Offers::new(handle, user, sources.certificate_files);
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
        if offer.private_key("key file", path, key).await? {
            return Ok(AuthOutcome::Success);
        }
    }
    if let Some(sock) = sources.agent_socket {
        if offer.agent_keys(sock).await? {
            return Ok(AuthOutcome::Success);
        }
    }
    for path in sources.default_keys {
        if !path.exists() {
            continue;
        }
        let key = match keys.load(path, false).await {
            Ok(k) => k,
            Err(e) => {
                offer.tried.push(format!(
                    "default key {} (skipped: {})",
                    path.display(),
                    e.detail()
                ));
                continue;
            }
        };
        if !offer.offered.contains(key.public_key())
            && offer.private_key("default key", path, key).await?
        {
            return Ok(AuthOutcome::Success);
        }
    }
    Ok(AuthOutcome::Failed { tried: offer.tried })
}

/// The keys offered to one server so far: listed in the error, and not offered twice.
struct Offers<'a> {
    handle: &'a mut Handle<ClientHandler>,
    user: &'a str,
    tried: Vec<String>,
    offered: Vec<russh::keys::PublicKey>,
    rsa_hash: Option<Option<HashAlg>>,
    certificate_files: &'a [PathBuf],
}

impl<'a> Offers<'a> {
    fn new(
        handle: &'a mut Handle<ClientHandler>,
        user: &'a str,
        certificate_files: &'a [PathBuf],
    ) -> Self {
        Offers {
            handle,
            user,
            tried: Vec::new(),
            offered: Vec::new(),
            rsa_hash: None,
            certificate_files,
        }
    }

    /// Offers a key read from `path`, its certificates first; whether the server accepted
    /// one.
    async fn private_key(
        &mut self,
        kind: &str,
        path: &Path,
        key: Arc<PrivateKey>,
    ) -> Result<bool, russh::Error> {
        for (cert_path, cert) in
            user_cert::for_key(Some(path), self.certificate_files, key.public_key())
        {
            let origin = cert_path.display().to_string();
            self.tried
                .push(user_cert::describe(&origin, &cert, self.user));
            let r = self
                .handle
                .authenticate_openssh_cert(self.user, key.clone(), cert)
                .await?;
            if r.success() {
                return Ok(true);
            }
        }
        self.tried.push(format!(
            "{kind} {} ({})",
            path.display(),
            fingerprint(key.public_key())
        ));
        self.offered.push(key.public_key().clone());
        let hash = self.hash_for(key.public_key()).await;
        let r = self
            .handle
            .authenticate_publickey(self.user, PrivateKeyWithHashAlg::new(key, hash))
            .await?;
        Ok(r.success())
    }

    /// Offers the keys of the ssh-agent at `sock` not offered yet; whether the server
    /// accepted one. An agent that cannot be reached is noted, not an error.
    async fn agent_keys(&mut self, sock: &Path) -> Result<bool, russh::Error> {
        let (mut agent, ids) = match agent_identities(sock).await {
            Ok(found) => found,
            Err(why) => {
                let at = sock.display();
                self.tried.push(format!("ssh-agent at {at} ({why})"));
                return Ok(false);
            }
        };
        if ids.is_empty() {
            let at = sock.display();
            self.tried
                .push(format!("ssh-agent at {at} (it holds no key)"));
        }
        for id in ids {
            let accepted = match id {
                AgentIdentity::Certificate {
                    certificate,
                    comment,
                } => {
                    let origin = format!("{comment} in the agent");
                    self.agent_certificate(&mut agent, certificate, &origin)
                        .await?
                }
                AgentIdentity::PublicKey { key, comment } if !self.offered.contains(&key) => {
                    self.agent_certificate_files(&mut agent, &key).await?
                        || self.agent_key(&mut agent, key, &comment).await?
                }
                AgentIdentity::PublicKey { .. } => false,
            };
            if accepted {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The `CertificateFile`s that certify a key the agent holds, each signed by the agent.
    async fn agent_certificate_files(
        &mut self,
        agent: &mut AgentClient<tokio::net::UnixStream>,
        key: &russh::keys::PublicKey,
    ) -> Result<bool, russh::Error> {
        for (path, cert) in user_cert::for_key(None, self.certificate_files, key) {
            let origin = path.display().to_string();
            if self.agent_certificate(agent, cert, &origin).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Offers a certificate whose key the agent holds, which signs for it.
    async fn agent_certificate(
        &mut self,
        agent: &mut AgentClient<tokio::net::UnixStream>,
        cert: russh::keys::Certificate,
        origin: &str,
    ) -> Result<bool, russh::Error> {
        self.tried
            .push(user_cert::describe(origin, &cert, self.user));
        let key = russh::keys::PublicKey::new(cert.public_key().clone(), "");
        let hash = self.hash_for(&key).await;
        let r = self
            .handle
            .authenticate_certificate_with(self.user, cert, hash, agent)
            .await;
        self.agent_outcome(r)
    }

    /// Offers one key of the agent, which signs for it.
    async fn agent_key(
        &mut self,
        agent: &mut AgentClient<tokio::net::UnixStream>,
        key: russh::keys::PublicKey,
        comment: &str,
    ) -> Result<bool, russh::Error> {
        self.tried
            .push(format!("agent key {comment} ({})", fingerprint(&key)));
        self.offered.push(key.clone());
        let hash = self.hash_for(&key).await;
        let r = self
            .handle
            .authenticate_publickey_with(self.user, key, hash, agent)
            .await;
        self.agent_outcome(r)
    }

    /// Whether the server accepted what the agent signed; an agent that could not sign is
    /// noted on the last "tried" entry, not an error.
    fn agent_outcome(
        &mut self,
        r: Result<russh::client::AuthResult, russh::AgentAuthError>,
    ) -> Result<bool, russh::Error> {
        match r {
            Ok(r) => Ok(r.success()),
            Err(russh::AgentAuthError::Send(_)) => Err(russh::Error::SendError),
            Err(russh::AgentAuthError::Key(e)) => {
                if let Some(last) = self.tried.last_mut() {
                    last.push_str(&format!(": the agent could not sign ({e})"));
                }
                Ok(false)
            }
        }
    }

    /// The signature hash for `key`: the server's choice for RSA, none for the others.
    async fn hash_for(&mut self, key: &russh::keys::PublicKey) -> Option<HashAlg> {
        if key.algorithm().is_rsa() {
            rsa_hash_for(self.handle, &mut self.rsa_hash).await
        } else {
            None
        }
    }
}

/// The agent at `sock` and the keys it holds; or why it cannot be used.
async fn agent_identities(
    sock: &Path,
) -> Result<(AgentClient<tokio::net::UnixStream>, Vec<AgentIdentity>), String> {
    let mut agent = AgentClient::connect_uds(sock)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let ids = agent
        .request_identities()
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    Ok((agent, ids))
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
