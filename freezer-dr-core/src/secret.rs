//! Secrets (BMC, Keystone, SMTP passwords): loadable from a value, a file or an environment variable, and
//! never printed.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

/// A secret string. `Debug` and `Display` print `<redacted>`; only [`Secret::expose`] gives the value.
///
/// In TOML it is written as a plain string, `{ file = "/etc/freezer-dr/bmc.pass" }` (trailing newlines are
/// removed) or `{ env = "BMC_PASSWORD" }`. File and variable are read when the config is loaded, so a missing
/// one is a config error at start, not during a failure.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A secret from its value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Reads a secret from a file, without its trailing newline.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, String> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
        Ok(Self(text.trim_end_matches(['\n', '\r']).to_owned()))
    }

    /// Reads a secret from an environment variable.
    pub fn from_env(var: &str) -> Result<Self, String> {
        std::env::var(var)
            .map(Self)
            .map_err(|_| format!("environment variable {var} is not set (or not UTF-8)"))
    }

    /// The secret value. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SecretSource {
    Value(String),
    File { file: PathBuf },
    Env { env: String },
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let source = SecretSource::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "expected a secret: a string, { file = \"/path\" } or { env = \"VARIABLE\" }",
            )
        })?;
        match source {
            SecretSource::Value(v) => Ok(Self(v)),
            SecretSource::File { file } => Self::from_file(file).map_err(serde::de::Error::custom),
            SecretSource::Env { env } => Self::from_env(&env).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    struct Conf {
        password: Secret,
    }

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("hunter2"));
        let c: Conf = toml::from_str("password = \"hunter2\"").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.password.expose(), "hunter2");
    }

    #[test]
    fn loads_from_file_without_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").unwrap();
        let text = format!("password = {{ file = {:?} }}", path.display().to_string());
        let c: Conf = toml::from_str(&text).unwrap();
        assert_eq!(c.password.expose(), "s3cret");
    }

    #[test]
    fn a_missing_file_or_variable_is_an_error_that_names_it() {
        let e = toml::from_str::<Conf>("password = { file = \"/nonexistent/pw\" }").unwrap_err();
        assert!(e.to_string().contains("/nonexistent/pw"), "{e}");
        let e = toml::from_str::<Conf>("password = { env = \"FREEZER_DR_SURELY_UNSET_VAR\" }")
            .unwrap_err();
        assert!(e.to_string().contains("FREEZER_DR_SURELY_UNSET_VAR"), "{e}");
    }
}
