use std::time::Duration;

use super::*;

fn finished(outcome: Outcome) -> Event {
    Event::HostFinished {
        host: "prod-02".into(),
        outcome,
        changed: true,
        changed_steps: 3,
        duration: Duration::from_secs(40),
        failed_step: Some("migrate".into()),
        message: Some("rc 1; database backup: /var/backups/sl.sql.gz".into()),
        log: "l".into(),
    }
}

#[test]
fn hosts_that_need_a_person_pull_their_trigger() {
    assert_eq!(Trigger::of(&finished(Outcome::Ok)), None);
    assert_eq!(Trigger::of(&finished(Outcome::Skipped)), None);
    assert_eq!(
        Trigger::of(&finished(Outcome::RolledBack)),
        Some(Trigger::HostFailed)
    );
    assert_eq!(
        Trigger::of(&finished(Outcome::Unreachable)),
        Some(Trigger::HostFailed)
    );
    assert_eq!(
        Trigger::of(&finished(Outcome::UnreachableMidUpgrade)),
        Some(Trigger::UnreachableMidUpgrade)
    );
    // By default: what a person must act on, and the end; not the start.
    assert!(!Trigger::DEFAULT.contains(&Trigger::RunStarted));
    assert!(Trigger::DEFAULT.contains(&Trigger::RunFinished));
}

#[test]
fn notifiers_from_the_playbook_and_the_command_line() {
    let yaml = "- webhook: https://hooks.example.com/services/T0/B0/SECRET\n- command: /usr/local/bin/page --team ops\n  on: [run_started, halted]\n  timeout: 10s\n";
    let list: Vec<Notifier> = serde_yaml::from_str(yaml).expect("notifiers");
    assert_eq!(list[0].on, Trigger::DEFAULT.to_vec());
    assert_eq!(list[0].timeout, DEFAULT_TIMEOUT);
    assert_eq!(list[1].on, vec![Trigger::RunStarted, Trigger::Halted]);
    assert_eq!(list[1].timeout, Duration::from_secs(10));
    // A warning never shows a webhook's secret path, nor a user's password.
    assert_eq!(
        list[0].target.describe(),
        "webhook https://hooks.example.com/…"
    );
    let with_user = Target::Webhook("https://u:pw@chat.example.org:8443/hook?k=1".into());
    assert_eq!(
        with_user.describe(),
        "webhook https://chat.example.org:8443/…"
    );
    assert_eq!(list[1].target.describe(), "command `/usr/local/bin/page`");
    for bad in [
        "- webhook: ftp://x\n",
        "- command: a\n  webhook: https://x\n",
        "- {}\n",
        "- command: a\n  on: [finished]\n",
        "- command: a\n  notify: x\n",
    ] {
        assert!(serde_yaml::from_str::<Vec<Notifier>>(bad).is_err(), "{bad}");
    }
    let flag = Notifier::parse_flag("webhook:http://127.0.0.1:9/x").expect("a flag");
    assert_eq!(flag.target, Target::Webhook("http://127.0.0.1:9/x".into()));
    assert_eq!(
        Notifier::parse_flag("command: logger -t fleetup").map(|n| n.target),
        Ok(Target::Command("logger -t fleetup".into()))
    );
    assert!(Notifier::parse_flag("http://x").is_err());
    assert!(Notifier::parse_flag("email:ops@example.com").is_err());
}

#[test]
fn a_hanging_command_is_given_up_at_its_timeout() {
    let slow = Notifier {
        target: Target::Command("sleep 5".into()),
        on: vec![Trigger::Halted],
        timeout: Duration::from_millis(200),
    };
    let started = std::time::Instant::now();
    let result = deliver(&slow, &serde_json::json!({}));
    assert!(matches!(result, Err(NotifyError::Timeout(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    let failing = Notifier {
        target: Target::Command("exit 3".into()),
        ..slow
    };
    let result = deliver(&failing, &serde_json::json!({}));
    assert!(matches!(result, Err(NotifyError::Exit(_))), "{result:?}");
}
