//! The fleet's one outside need, OpenSSH's server and keygen: installed when the machine
//! lacks them, so that `cargo test` and the sandbox work as written on a fresh machine.

use crate::util::{self, Ctx, Result};
use std::path::Path;
use std::process::Command;

const NEEDED: [&str; 2] = ["/usr/sbin/sshd", "/usr/bin/ssh-keygen"];

/// Installs openssh-server and openssh-client with apt-get when either is missing. Fleets
/// start in parallel: one installs under a lock, the others wait for it and find it done.
pub fn ensure_openssh() -> Result<()> {
    let present = || NEEDED.iter().all(|p| Path::new(p).exists());
    if present() {
        return Ok(());
    }
    let _lock = util::lock(Path::new("/tmp/fleet-sim-apt.lock"))?;
    if present() {
        return Ok(());
    }
    eprintln!("fleet-sim: installing openssh-server and openssh-client (the hosts run real sshd)");
    for args in [
        &["update", "-qq"][..],
        &["install", "-y", "-qq", "openssh-server", "openssh-client"][..],
    ] {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .ctx("running apt-get (as root)")?;
        if !status.success() {
            return Err(format!("apt-get {} failed ({status})", args.join(" ")));
        }
    }
    Ok(())
}
