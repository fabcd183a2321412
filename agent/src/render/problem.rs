//! What a render reports: a [`Problem`] located by file, line, stack and service, and a failed render's
//! [`RenderError`] (every problem it found).
//!
//! Layer: foundations (see the table in `render`).

use std::path::Path;

/// One problem found while rendering, with as much location as is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Repository-relative file.
    pub file: Option<String>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub stack: Option<String>,
    pub service: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}")?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
                if let Some(col) = self.column {
                    write!(f, ":{col}")?;
                }
            }
            write!(f, ": ")?;
        }
        if let Some(stack) = &self.stack {
            write!(f, "stack {stack}")?;
            if let Some(service) = &self.service {
                write!(f, ", service {service}")?;
            }
            write!(f, ": ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// Every problem of a failed render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RenderError {
    pub problems: Vec<Problem>,
}

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl Problem {
    pub(super) fn at(file: &Path, message: impl std::fmt::Display) -> Problem {
        Problem {
            file: Some(display_path(file)),
            line: None,
            column: None,
            stack: None,
            service: None,
            message: message.to_string(),
        }
    }
}

pub(super) fn display_path(p: &Path) -> String {
    p.display().to_string()
}
