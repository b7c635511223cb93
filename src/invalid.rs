//! A configuration value that cannot be used, named by its field.
//!
//! Each component validates its own section of the configuration next to
//! its code and names fields relative to that section (`max_symbols`);
//! the configuration puts the section's path in front (`session.`), so the
//! operator reads `session.max_symbols: must be at least 1`.

/// A bad configuration value: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error one level down: `prefix` is the path of the section
    /// the field is in (`feeds[0]`, `session`).
    pub fn under(mut self, prefix: &str) -> Self {
        self.field = format!("{prefix}.{}", self.field);
        self
    }
}

/// `Err` naming `field` when `value` is 0.
pub fn at_least_one(field: &str, value: u64) -> Result<(), Invalid> {
    if value == 0 {
        return Err(Invalid::new(field, "must be at least 1"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_compose() {
        let e = Invalid::new("max_symbols", "must be at least 1").under("session");
        assert_eq!(e.to_string(), "session.max_symbols: must be at least 1");
        assert_eq!(at_least_one("x", 0).unwrap_err().field, "x");
        assert!(at_least_one("x", 1).is_ok());
    }
}
