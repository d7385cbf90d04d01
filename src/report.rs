//! Validation findings: unlike [`crate::Error`], validation keeps going and reports everything.

use serde::Serialize;
use std::fmt;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For information only.
    Info,
    /// Works, but not as the user probably wants.
    Warning,
    /// Blocks the target.
    Error,
}

/// One finding: what, where, how to fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Severity.
    pub severity: Severity,
    /// Stable code (e.g. `azure-size-not-mib`).
    pub code: String,
    /// What is wrong.
    pub message: String,
    /// Where: a file, a structure, an offset, a key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// How to fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Every finding of one validation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The findings, in the order found.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Adds a finding.
    pub fn add(
        &mut self,
        severity: Severity,
        code: &str,
        message: impl Into<String>,
        location: Option<String>,
        fix: Option<&str>,
    ) {
        self.findings.push(Finding {
            severity,
            code: code.to_string(),
            message: message.into(),
            location,
            fix: fix.map(str::to_string),
        });
    }

    /// Shorthand for an error finding.
    pub fn error(
        &mut self,
        code: &str,
        message: impl Into<String>,
        location: Option<String>,
        fix: Option<&str>,
    ) {
        self.add(Severity::Error, code, message, location, fix);
    }

    /// Shorthand for a warning finding.
    pub fn warn(
        &mut self,
        code: &str,
        message: impl Into<String>,
        location: Option<String>,
        fix: Option<&str>,
    ) {
        self.add(Severity::Warning, code, message, location, fix);
    }

    /// Shorthand for an info finding.
    pub fn info(&mut self, code: &str, message: impl Into<String>, location: Option<String>) {
        self.add(Severity::Info, code, message, location, None);
    }

    /// True when some finding blocks.
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    /// Number of findings of a severity.
    pub fn count(&self, s: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity == s).count()
    }

    /// True when a finding with `code` exists.
    pub fn has(&self, code: &str) -> bool {
        self.findings.iter().any(|f| f.code == code)
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{sev}: ")?;
        if let Some(l) = &self.location {
            write!(f, "{l}: ")?;
        }
        write!(f, "{} [{}]", self.message, self.code)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n    fix: {fix}")?;
        }
        Ok(())
    }
}
