//! Fitting the terminal's lines to its width: the live line of a host, the overall bar,
//! and any line cut where it would wrap.

use std::time::Duration;

use console::measure_text_width;

use crate::ui::text::{clean, elapsed, plural};

/// `⠋ prod-03  [6/14] pull the new image  12s`, fitted to `width`: the step's name is
/// shortened first, so that the host and the elapsed time stay visible.
pub fn host_line(
    frame: char,
    host: &str,
    host_width: usize,
    label: &str,
    name: &str,
    took: Duration,
    width: usize,
) -> String {
    let host = fit(&clean(host), host_width.max(1));
    let pad = host_width.saturating_sub(measure_text_width(&host));
    let label = if label.is_empty() {
        String::new()
    } else {
        format!("{label} ")
    };
    let prefix = format!("{frame} {host}{}  {label}", " ".repeat(pad));
    let suffix = format!("  {}", elapsed(took));
    let room = width.saturating_sub(measure_text_width(&prefix) + measure_text_width(&suffix));
    if room < 4 {
        return fit(&format!("{prefix}{name}{suffix}"), width);
    }
    format!("{prefix}{}{suffix}", fit(&clean(name), room))
}

/// `[██████░░░░░░] 12/40 hosts · 3m12s · ETA ~8m00s`, fitted to `width`; `left`: the
/// time left, when known.
pub fn overall_line(
    done: usize,
    total: usize,
    took: Duration,
    left: Option<Duration>,
    width: usize,
) -> String {
    let bar_width = (width / 3).clamp(10, 30);
    let filled = (done * bar_width)
        .checked_div(total)
        .unwrap_or(0)
        .min(bar_width);
    let mut line = format!(
        "[{}{}] {done}/{total} host{} · {}",
        "█".repeat(filled),
        "░".repeat(bar_width - filled),
        plural(total),
        elapsed(took)
    );
    if let Some(left) = left.filter(|_| done < total) {
        line.push_str(&format!(" · ETA ~{}", elapsed(left)));
    }
    fit(&line, width)
}

/// `s` cut to `width` columns, with `…` where it was cut.
pub fn fit(s: &str, width: usize) -> String {
    console::truncate_str(s, width, "…").into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_line() {
        let line = host_line(
            '⠋',
            "prod-03",
            9,
            "[6/14]",
            "pull the new image",
            Duration::from_millis(12_400),
            80,
        );
        assert_eq!(line, "⠋ prod-03    [6/14] pull the new image  12s");
    }

    #[test]
    fn long_lines_are_cut_to_the_width_keeping_the_elapsed_time() {
        let name = "pull the new image from the registry, which is a long way away";
        let cut = |width| {
            host_line(
                '⠋',
                "prod-03",
                7,
                "[6/14]",
                name,
                Duration::from_secs(75),
                width,
            )
        };
        let line = cut(40);
        assert_eq!(measure_text_width(&line), 40);
        assert_eq!(line, "⠋ prod-03  [6/14] pull the new i…  1m15s");
        // Too narrow even for that: the whole line is cut.
        let line = cut(12);
        assert_eq!(line, "⠋ prod-03  …");
        // Host names are cut to their column, and neutralised.
        let line = host_line(
            '⠋',
            "a-very-long\x1b[2J-host-name",
            8,
            "",
            "connecting",
            Duration::ZERO,
            80,
        );
        assert_eq!(line, "⠋ a-very-…  connecting  0s");
    }

    #[test]
    fn the_overall_bar() {
        let left = Some(Duration::from_secs(90));
        assert_eq!(
            overall_line(1, 4, Duration::from_secs(30), left, 60),
            "[█████░░░░░░░░░░░░░░░] 1/4 hosts · 30s · ETA ~1m30s"
        );
        assert_eq!(
            overall_line(1, 4, Duration::from_secs(30), None, 60),
            "[█████░░░░░░░░░░░░░░░] 1/4 hosts · 30s"
        );
        assert_eq!(
            overall_line(0, 0, Duration::ZERO, None, 30),
            "[░░░░░░░░░░] 0/0 hosts · 0s"
        );
        assert_eq!(
            measure_text_width(&overall_line(3, 9, Duration::from_secs(9), left, 20)),
            20
        );
    }
}
