//! The fleet-wide pre-flight and `fleetup status`: one row per host with its report
//! columns, and what stops a run from starting.

use crate::engine::PreflightResult;
use crate::events::Outcome;
use crate::ui::text::{align, clean, plural};

/// A table: HOST, PRE-FLIGHT (ok, FAILED, UNREACHABLE), then the report's columns; a
/// failed or unreachable host says why on its row.
pub fn table(results: &[PreflightResult], columns: &[String]) -> String {
    let mut rows: Vec<Vec<String>> = vec![[
        vec!["HOST".into(), "PRE-FLIGHT".into()],
        columns.iter().map(|c| c.to_uppercase()).collect(),
    ]
    .concat()];
    for r in results {
        let state = match r.outcome {
            Outcome::Ok => "ok".to_string(),
            other => other.label().to_uppercase(),
        };
        let mut row = vec![clean(&r.host).into_owned(), state];
        // A failed host that still told its columns shows them, then why it failed.
        if !r.report.is_empty() {
            row.extend(columns.iter().map(|c| {
                let value = r
                    .report
                    .iter()
                    .find(|(k, _)| k == c)
                    .map(|(_, v)| v.as_str())
                    .unwrap_or("");
                clean(value.trim()).into_owned()
            }));
        }
        if let Some(m) = &r.message {
            row.push(clean(m).into_owned());
        }
        rows.push(row);
    }
    align(&rows)
}

/// `v4.66.1: 7 hosts · v4.65.0: 2 hosts · unreachable: 1 host`: how many hosts show each
/// value of `column`, most common first. In the `version` column, `v4.66.1` and `4.66.1`
/// are one release (SimpleLogin's image has both tags, and each host keeps its own form):
/// counted together, under the form seen first.
pub fn counts(results: &[PreflightResult], column: &str) -> String {
    let same = |a: &str, b: &str| match column {
        "version" => a.trim_start_matches(['v', 'V']) == b.trim_start_matches(['v', 'V']),
        _ => a == b,
    };
    let mut counts: Vec<(String, usize)> = Vec::new();
    for r in results {
        let key = match r.outcome {
            Outcome::Ok => r
                .report
                .iter()
                .find(|(k, _)| k == column)
                .map_or(String::new(), |(_, v)| v.trim().to_string()),
            other => other.label().to_lowercase(),
        };
        match counts.iter_mut().find(|(k, _)| same(k, &key)) {
            Some((_, n)) => *n += 1,
            None => counts.push((key, 1)),
        }
    }
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    counts
        .iter()
        .map(|(k, n)| {
            format!(
                "{}: {n} host{}",
                if k.is_empty() { "?" } else { k.as_str() },
                plural(*n)
            )
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(
        host: &str,
        outcome: Outcome,
        version: &str,
        message: Option<&str>,
    ) -> PreflightResult {
        PreflightResult {
            host: host.into(),
            outcome,
            // An unreachable host told nothing.
            report: match outcome {
                Outcome::Unreachable => vec![],
                _ => vec![
                    ("version".into(), version.into()),
                    ("health".into(), "success".into()),
                ],
            },
            message: message.map(String::from),
            version: Some(version.into()),
        }
    }

    #[test]
    fn table_and_counts() {
        let results = [
            result("prod-01", Outcome::Ok, "v4.66.1", None),
            result("prod-02", Outcome::Ok, "v4.65.0\n", None),
            result(
                "prod-03",
                Outcome::Unreachable,
                "",
                Some("connection refused"),
            ),
            result("prod-04", Outcome::Ok, "4.66.1", None),
            result(
                "prod-05",
                Outcome::Failed,
                "v4.67.1",
                Some("upgradable: refused: downgrade"),
            ),
        ];
        let columns = ["version".to_string(), "health".to_string()];
        assert_eq!(
            table(&results, &columns),
            "HOST     PRE-FLIGHT   VERSION  HEALTH\n\
             prod-01  ok           v4.66.1  success\n\
             prod-02  ok           v4.65.0  success\n\
             prod-03  UNREACHABLE  connection refused\n\
             prod-04  ok           4.66.1   success\n\
             prod-05  FAILED       v4.67.1  success  upgradable: refused: downgrade\n"
        );
        assert_eq!(
            counts(&results, "version"),
            "v4.66.1: 2 hosts · failed: 1 host · unreachable: 1 host · v4.65.0: 1 host"
        );
    }
}
