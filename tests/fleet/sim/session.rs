//! `fleet-sim session FLEET_DIR`: sshd's ForceCommand. Finds which simulated host the
//! connection is for, logs the command, applies session faults, runs the command with the
//! shims first on PATH, and makes sure nothing of it outlives a signal.

use crate::faults::{self, TERMINATING};
use crate::log;
use crate::util::{self, Ctx, Result};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// The host a connection is for: the server port (4th field of SSH_CONNECTION) names it.
pub fn host_for_connection(fleet_dir: &Path) -> Result<(String, PathBuf)> {
    let conn =
        std::env::var("SSH_CONNECTION").ctx("SSH_CONNECTION is not set (not run by sshd?)")?;
    let port = conn
        .split_whitespace()
        .nth(3)
        .ok_or_else(|| format!("cannot read the server port from SSH_CONNECTION={conn:?}"))?;
    let map = fleet_dir.join("ports").join(port);
    let name = std::fs::read_to_string(&map).ctx(format!(
        "no simulated host on port {port} ({})",
        map.display()
    ))?;
    let name = name.trim().to_string();
    let dir = fleet_dir.join("hosts").join(&name);
    Ok((name, dir))
}

pub fn run(args: &[String]) -> Result<i32> {
    let fleet_dir = match args.first() {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var("FLEET_DIR").ctx("session needs the fleet dir")?),
    };
    let (name, host_dir) = host_for_connection(&fleet_dir)?;
    let cmd = std::env::var("SSH_ORIGINAL_COMMAND").ok();
    // Block the signals we handle before the start is logged and the child exists, so that
    // none is lost in between and a session killed at once still logs how it ended; the
    // child gets an empty mask from std's spawn.
    let mut handled = TERMINATING.to_vec();
    handled.push(libc::SIGCHLD);
    faults::block(&handled);
    let entry = log::start(&host_dir, "session", cmd.as_deref().unwrap_or(""));

    if let Some(c) = &cmd {
        faults::check(&host_dir, "session", c, &entry);
    }

    let path = format!(
        "{}:/usr/local/bin:/usr/bin:/bin",
        fleet_dir.join("bin").display()
    );
    let mut child_cmd = Command::new("/bin/sh");
    if let Some(c) = &cmd {
        child_cmd.arg("-c").arg(c);
    }
    child_cmd
        .env("PATH", path)
        .env("FLEET_HOST_DIR", &host_dir)
        .env("FLEET_HOST", &name)
        .env("FLEET_DIR", &fleet_dir)
        .env("FLEET_SESSION_ID", &entry.id)
        // Its own group, so that on a signal we can kill the command's whole tree at once.
        .process_group(0);
    let child = match child_cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fleet-sim session: cannot run /bin/sh: {e}");
            entry.end_rc(127);
            return Ok(127);
        }
    };
    Ok(supervise(child, &entry, &handled))
}

/// Waits for the command to end and logs how; on a terminating signal, ends the command's
/// whole group first and dies by the signal, as the session would have.
fn supervise(mut child: Child, entry: &log::Entry, handled: &[i32]) -> i32 {
    let set = faults::sigset(handled);
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            if let Some(sig) = st.signal() {
                entry.end_signal(sig);
                faults::die_by_signal(sig);
            }
            let rc = st.code().unwrap_or(1);
            entry.end_rc(rc);
            return rc;
        }
        let ts = libc::timespec {
            tv_sec: 1,
            tv_nsec: 0,
        };
        // SAFETY: valid set and timespec.
        let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
        if TERMINATING.contains(&sig) {
            end_group(&mut child, sig);
            entry.end_signal(sig);
            faults::die_by_signal(sig);
        }
    }
}

/// Passes `sig` to the command's group, gives the group a moment to exit on its own (the
/// shims log their end) until no member is left (zombies are reaped at once by the fleet's
/// supervisor), then kills whatever ignored it or was left behind by a dead shell.
fn end_group(child: &mut Child, sig: i32) {
    let group = child.id() as i32;
    // SAFETY: plain syscalls on the child's process group.
    unsafe {
        libc::killpg(group, sig);
    }
    let deadline = util::now() + 1.0;
    while util::now() < deadline {
        let _ = child.try_wait();
        // SAFETY: signal 0 only probes for existence.
        if unsafe { libc::killpg(group, 0) } != 0 {
            break;
        }
        util::sleep_secs(0.005);
    }
    // SAFETY: as above.
    unsafe {
        libc::killpg(group, libc::SIGKILL);
    }
    let _ = child.try_wait();
}
