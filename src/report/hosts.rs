//! The report's table of hosts: how each ended, how long it took, what the pre-flight read
//! on it before (the playbook's `report:` columns) and where it was going, and a click away
//! the end of each step's output from its log.

use std::fmt::Write;

use indexmap::IndexMap;

use super::{escape, outcome_class, Sources};
use crate::state::RunState;
use crate::ui::text::{duration, outcome_label};

/// Lines of a step's output kept in the page: its end says most, the log has the rest.
const TAIL_LINES: usize = 12;
/// At most this much of one step's output, and of one host's steps, in bytes.
const STEP_BYTES: usize = 1_500;
const HOST_BYTES: usize = 8_000;

pub(super) fn section(s: &Sources, state: &RunState, out: &mut String) {
    let columns = s.preflight_columns();
    out.push_str("<section id=\"hosts\"><h2>Hosts</h2><table><thead><tr><th>host</th><th>outcome</th><th>time</th>");
    let after = !s.after.is_empty();
    for c in &columns {
        let _ = write!(out, "<th>{} before</th>", escape(c));
        if after {
            let _ = write!(out, "<th>{} after</th>", escape(c));
        }
    }
    let target = s.record.target.join(", ");
    if !target.is_empty() {
        out.push_str("<th>target</th>");
    }
    out.push_str("</tr></thead><tbody>\n");
    for (host, h) in state.hosts() {
        let (outcome, class, took) = match &h.end {
            Some(end) => (
                outcome_label(end.outcome),
                outcome_class(end.outcome),
                duration(end.duration),
            ),
            None if h.started => ("not finished".into(), "unfinished", String::new()),
            None => ("never started".into(), "untouched", String::new()),
        };
        let _ = write!(
            out,
            "<tr id=\"host-{id}\"><td>{name}</td><td class=\"outcome {class}\">{}</td><td>{took}</td>",
            escape(&outcome),
            id = escape(host),
            name = escape(host),
        );
        let (before, now) = (s.preflight_row(host), s.after_row(host));
        for c in &columns {
            let _ = write!(out, "<td>{}</td>", escape(cell(before, c)));
            if after {
                let _ = write!(out, "<td>{}</td>", escape(cell(now, c)));
            }
        }
        if !target.is_empty() {
            let _ = write!(out, "<td>{}</td>", escape(&target));
        }
        out.push_str("</tr>\n");
        if let Some(log) = s.logs.get(host) {
            let _ = writeln!(
                out,
                "<tr class=\"steps\"><td colspan=\"{}\"><details><summary>steps and output of {}</summary>{}</details></td></tr>",
                columns.len() * (1 + usize::from(after)) + 3 + usize::from(!target.is_empty()),
                escape(host),
                excerpts(log)
            );
        }
    }
    out.push_str("</tbody></table></section>\n");
}

fn cell<'a>(row: Option<&'a IndexMap<String, String>>, column: &str) -> &'a str {
    row.and_then(|r| r.get(column)).map_or("", String::as_str)
}

/// The pre-flight of every host, as its last pre-flight read it (a resume reads only the
/// hosts left); the printed table when the rows were not kept.
pub(super) fn preflight(s: &Sources, out: &mut String) {
    out.push_str("<section id=\"preflight\"><h2>Pre-flight</h2>");
    if s.before.is_empty() {
        if let Some(table) = &s.preflight {
            let _ = write!(out, "<pre>{}</pre>", escape(table));
        }
        out.push_str("</section>\n");
        return;
    }
    let columns = s.preflight_columns();
    out.push_str("<table><thead><tr><th>host</th><th>pre-flight</th>");
    for c in &columns {
        let _ = write!(out, "<th>{}</th>", escape(c));
    }
    out.push_str("<th></th></tr></thead><tbody>\n");
    for b in &s.before {
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"outcome {}\">{}</td>",
            escape(&b.host),
            outcome_class(b.outcome),
            escape(&outcome_label(b.outcome))
        );
        for c in &columns {
            let value = b.report.get(c).map_or("", String::as_str);
            let _ = write!(out, "<td>{}</td>", escape(value));
        }
        let why = b.message.as_deref().unwrap_or("");
        let _ = writeln!(out, "<td>{}</td></tr>", escape(why));
    }
    out.push_str("</tbody></table></section>\n");
}

/// Each step of a host's log (`=== label`, `$ command`, output, `--- how`), its output cut
/// to its last lines; the host's last steps first when the whole is too long.
fn excerpts(log: &str) -> String {
    let mut steps: Vec<String> = Vec::new();
    for section in log.split("\n=== ").map(|s| s.trim_start_matches("=== ")) {
        let mut lines = section.lines();
        let Some(title) = lines.next().filter(|t| !t.is_empty()) else {
            continue;
        };
        let body: Vec<&str> = lines.collect();
        let skip = body.len().saturating_sub(TAIL_LINES);
        let mut tail = body[skip..].join("\n");
        if tail.len() > STEP_BYTES {
            let cut = tail.len() - STEP_BYTES;
            let cut = (cut..tail.len())
                .find(|i| tail.is_char_boundary(*i))
                .unwrap_or(0);
            tail = format!("…{}", &tail[cut..]);
        }
        let more = if skip > 0 { "…\n" } else { "" };
        steps.push(format!(
            "<h4>{}</h4><pre>{more}{}</pre>",
            escape(title),
            escape(&tail)
        ));
    }
    let mut kept = 0;
    let mut shown: Vec<String> = Vec::new();
    for step in steps.into_iter().rev() {
        kept += step.len();
        if kept > HOST_BYTES && !shown.is_empty() {
            shown.push("<p>earlier steps: see the host's log</p>".to_string());
            break;
        }
        shown.push(step);
    }
    shown.reverse();
    shown.concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_step_keeps_the_end_of_its_output_escaped() {
        let mut log =
            String::from("=== [1/2] check\n$ docker ps\nCONTAINER <none>\n--- ok in 0.1s\n");
        log.push_str("=== [2/2] pull\n$ docker pull x\n");
        for i in 0..40 {
            log.push_str(&format!("layer {i}\n"));
        }
        log.push_str("--- failed (rc 1) in 2.0s\n");
        let html = excerpts(&log);
        assert!(html.contains("<h4>[1/2] check</h4><pre>$ docker ps\nCONTAINER &lt;none&gt;\n--- ok in 0.1s</pre>"), "{html}");
        assert!(
            html.contains("<h4>[2/2] pull</h4><pre>…\nlayer 29\n"),
            "{html}"
        );
        assert!(!html.contains("layer 28\n"), "{html}");
    }

    #[test]
    fn a_long_log_keeps_its_last_steps() {
        let log: String = (0..50)
            .map(|i| {
                format!(
                    "=== [{i}/50] step\n$ cmd\n{}\n--- ok in 1.0s\n",
                    "x".repeat(1000)
                )
            })
            .collect();
        let html = excerpts(&log);
        assert!(html.len() < HOST_BYTES + 2_000, "{}", html.len());
        assert!(html.contains("[49/50] step"));
        assert!(!html.contains("[0/50] step"));
        assert!(html.ends_with("</pre>"));
        assert!(
            html.starts_with("<p>earlier steps: see the host's log</p>"),
            "{html}"
        );
    }
}
