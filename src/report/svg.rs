//! The timeline drawn as inline SVG: one chart per batch, every chart of an attempt on the
//! attempt's own time axis, a row per host, a bar per step with its name and time in a
//! tooltip (`<title>`), and the pauses, halts, deferrals and stops marked across the rows.

use std::fmt::Write;
use std::time::Duration;

use super::escape;
use super::timeline::{Attempt, BatchRows, Mark};
use crate::ui::text::{duration, outcome_label};

/// Columns for the host names, then the time axis.
const NAMES: f64 = 170.0;
const AXIS: f64 = 900.0;
const OUTCOME: f64 = 150.0;
const ROW: f64 = 16.0;
const BAR: f64 = 11.0;
const HEAD: f64 = 22.0;

/// The attempt's time span, mapped onto the axis.
struct Scale {
    start_ms: u64,
    span_ms: f64,
}

impl Scale {
    fn of(a: &Attempt) -> Scale {
        Scale {
            start_ms: a.start_ms,
            span_ms: (a.end_ms.saturating_sub(a.start_ms)).max(1) as f64,
        }
    }

    fn x(&self, at_ms: u64) -> f64 {
        NAMES + AXIS * (at_ms.saturating_sub(self.start_ms) as f64 / self.span_ms)
    }
}

/// The charts of one attempt, a batch each.
pub fn attempt(a: &Attempt, out: &mut String) {
    let scale = Scale::of(a);
    let took = Duration::from_millis(a.end_ms.saturating_sub(a.start_ms));
    let _ = writeln!(
        out,
        "<section class=\"attempt\" id=\"attempt-{n}\"><h2>Attempt {n} <small>{}</small></h2>",
        duration(took),
        n = a.number
    );
    marks_legend(&a.marks, out);
    for batch in &a.batches {
        chart(batch, &a.marks, &scale, out);
    }
    out.push_str("</section>\n");
}

/// The marks in words, under the attempt's title.
fn marks_legend(marks: &[Mark], out: &mut String) {
    if marks.is_empty() {
        return;
    }
    out.push_str("<ul class=\"marks\">");
    for m in marks {
        let _ = write!(
            out,
            "<li class=\"{}\">{}</li>",
            m.kind.class(),
            escape(&m.text)
        );
    }
    out.push_str("</ul>\n");
}

fn chart(batch: &BatchRows, marks: &[Mark], scale: &Scale, out: &mut String) {
    let title = match (batch.number, batch.canary) {
        (0, _) => "hosts outside a batch".to_string(),
        (n, true) => format!("batch {n} of {} (canary)", batch.of),
        (n, false) => format!("batch {n} of {}", batch.of),
    };
    let height = HEAD + ROW * batch.rows.len() as f64 + 4.0;
    let width = NAMES + AXIS + OUTCOME;
    let _ = writeln!(
        out,
        "<figure class=\"batch\" data-batch=\"{}\"><figcaption>{} · {} host{}</figcaption>\
         <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\">",
        batch.number,
        escape(&title),
        batch.rows.len(),
        if batch.rows.len() == 1 { "" } else { "s" },
    );
    for m in marks {
        mark(m, scale, height, out);
    }
    for (i, row) in batch.rows.iter().enumerate() {
        let y = HEAD + ROW * i as f64;
        let _ = write!(
            out,
            "<g class=\"host\" data-host=\"{host}\"><text x=\"4\" y=\"{ty}\">{host}</text>",
            host = escape(&row.host),
            ty = y + BAR,
        );
        for bar in &row.bars {
            let x = scale.x(bar.start_ms);
            let w = (scale.x(bar.end_ms) - x).max(1.5);
            let took = Duration::from_millis(bar.end_ms.saturating_sub(bar.start_ms));
            let why = bar
                .message
                .as_deref()
                .map(|m| format!(": {}", escape(m)))
                .unwrap_or_default();
            let _ = write!(
                out,
                "<rect class=\"{}\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{BAR}\"><title>{} {} — {} in {}{why}</title></rect>",
                bar.kind.class(),
                y + 2.0,
                escape(&row.host),
                escape(&bar.label),
                bar.kind.class(),
                duration(took),
            );
        }
        let outcome = row
            .outcome
            .map_or_else(|| "not finished".to_string(), outcome_label);
        let class = row
            .outcome
            .map_or("unfinished", |o| super::outcome_class(o));
        let _ = writeln!(
            out,
            "<text class=\"outcome {class}\" x=\"{:.1}\" y=\"{:.1}\">{}</text></g>",
            NAMES + AXIS + 6.0,
            y + BAR,
            escape(&outcome)
        );
    }
    out.push_str("</svg></figure>\n");
}

/// A pause as a band across the rows; a halt, deferral or stop as a line.
fn mark(m: &Mark, scale: &Scale, height: f64, out: &mut String) {
    let x = scale.x(m.start_ms);
    let title = escape(&m.text);
    let class = m.kind.class();
    match m.end_ms {
        Some(end) => {
            let w = (scale.x(end) - x).max(1.0);
            let _ = write!(
                out,
                "<rect class=\"mark {class}\" x=\"{x:.1}\" y=\"0\" width=\"{w:.1}\" height=\"{height}\"><title>{title}</title></rect>"
            );
        }
        None => {
            let _ = write!(
                out,
                "<line class=\"mark {class}\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"0\" y2=\"{height}\"><title>{title}</title></line>"
            );
        }
    }
}
