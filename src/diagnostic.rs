//! Errors in the operator's input files, with the place they were found.
//!
//! Every check of an inventory or playbook reports through [`Diagnostic`], so that an
//! operator always gets `file:line:column: field: what is wrong (what to do)`, and so that
//! all problems of a file are reported at once rather than one per attempt.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in an input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no single place (e.g. a file that cannot be read).
    pub line: usize,
    /// 1-based; 0 when unknown.
    pub column: usize,
    /// Where in the document, e.g. `steps[2].shell` or `rollout.serial`; empty for the whole file.
    pub field: String,
    pub message: String,
    /// What to do about it, e.g. a did-you-mean suggestion.
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(file: &Path, field: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            field: field.into(),
            message: message.into(),
            hint: None,
        }
    }

    pub fn at(mut self, pos: Option<Pos>) -> Self {
        if let Some(pos) = pos {
            self.line = pos.line;
            self.column = pos.column;
        }
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// A place in a file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// All the problems found in the inputs of one command. Nothing was contacted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

/// "did you mean `x`?" for a misspelt name, when one of the candidates is close enough.
pub fn did_you_mean<'a>(
    wrong: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(wrong, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_line_column_field_and_hint() {
        let d = Diagnostic::new(Path::new("p.yml"), "steps[0].shel", "unknown field")
            .at(Some(Pos { line: 4, column: 5 }))
            .hint("did you mean `shell`?");
        assert_eq!(
            d.to_string(),
            "p.yml:4:5: steps[0].shel: unknown field (did you mean `shell`?)"
        );
    }

    #[test]
    fn suggestion_only_when_close() {
        assert_eq!(
            did_you_mean("sl_versoin", ["sl_version", "sl_app_path"]),
            Some("did you mean `sl_version`?".into())
        );
        assert_eq!(did_you_mean("zzz", ["sl_version"]), None);
    }
}
