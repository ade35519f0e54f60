//! The view for programs: each event as one JSON object per line on stdout, flushed at once
//! so that a consumer sees every event as it happens, and nothing else on stdout.
//! JSON strings escape control characters, so nothing a host sends can reach a terminal raw.

use std::io::Write;

use crate::events::Stamped;
use crate::ui::View;

pub struct JsonView {
    out: Box<dyn Write + Send>,
    /// Once the reader is gone (a closed pipe), writing more only costs errors.
    broken: bool,
}

impl JsonView {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        JsonView { out, broken: false }
    }
}

impl View for JsonView {
    fn event(&mut self, e: &Stamped) {
        if self.broken {
            return;
        }
        let line = match serde_json::to_string(e) {
            Ok(line) => line,
            Err(err) => {
                // Stdout is the contract: a diagnostic belongs on stderr, never in the stream.
                eprintln!("fleetup: could not write an event as JSON: {err}");
                return;
            }
        };
        if writeln!(self.out, "{line}")
            .and_then(|()| self.out.flush())
            .is_err()
        {
            self.broken = true;
        }
    }

    fn finish(&mut self) {
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::sample_run::{self, Capture};

    #[test]
    fn one_object_per_line_that_parses_back() {
        let capture = Capture::default();
        let mut view = JsonView::new(Box::new(capture.clone()));
        let events = sample_run::run();
        for e in &events {
            view.event(e);
        }
        view.finish();
        let text = capture.text();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), events.len());
        for (line, e) in lines.iter().zip(&events) {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON object per line");
            assert_eq!(v["at_ms"], e.at_ms);
            assert_eq!(v, serde_json::to_value(e).expect("events serialise"));
        }
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(lines[13]).expect("JSON")["stderr_tail"][0],
            "\x1b[31mmanifest unknown\x1b[0m"
        );
        // What hosts send reaches a terminal that shows the stream only as escapes.
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn a_closed_pipe_is_not_written_again() {
        struct Closed(usize);
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                self.0 += 1;
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut view = JsonView::new(Box::new(Closed(0)));
        for e in sample_run::run() {
            view.event(&e);
        }
        assert!(view.broken);
    }
}
