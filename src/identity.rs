//! Who runs fleetup, and from where: recorded in the journal, in host locks and in the
//! hosts' audit lines, so that a lock or a line always names a person and a machine.

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::{gethostname, getuid, Pid, User};

/// The operator: `$USER`, else `$LOGNAME`, else the name of the user id (cron and
/// systemd jobs set neither variable), else the numeric id.
pub fn operator() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| !v.is_empty())
        .or_else(user_name)
        .unwrap_or_else(|| format!("uid {}", getuid()))
}

fn user_name() -> Option<String> {
    User::from_uid(getuid())
        .ok()
        .flatten()
        .map(|user| user.name)
        .filter(|n| !n.is_empty())
}

/// The controller's host name, as the kernel knows it.
pub fn controller() -> String {
    match gethostname() {
        Ok(name) => name.to_string_lossy().into_owned(),
        Err(_) => "unknown".into(),
    }
}

/// Whether a process of this machine is alive (it may belong to another user).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // Signal 0 only checks that the process exists; EPERM means it exists but is another
    // user's.
    matches!(kill(Pid::from_raw(pid), None), Ok(()) | Err(Errno::EPERM))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_names_its_machine() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0));
        assert!(!controller().is_empty());
        assert!(!operator().is_empty());
        assert!(user_name().is_some_and(|n| !n.is_empty()));
    }
}
