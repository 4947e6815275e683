//! Diagnostics for the TOML config: errors that name the file, the line, the full key and the fix.
//!
//! A leaf below the registry and the config format: drivers reach it through
//! [`crate::registry::BuildContext::parse`], core's own sections through `crate::config`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// Deserializes one driver section's options into `T`, with an error that names the file, the full key
/// and the fix (the closest known key for a typo, the expected type for a wrong one).
pub(crate) fn parse_section<T: serde::de::DeserializeOwned>(
    file: &Path,
    section: &str,
    options: &toml::Table,
) -> crate::Result<T> {
    let value = toml::Value::Table(options.clone());
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = join_path(section, &e.path().to_string());
        let (key, problem) = explain(&path, e.inner().message(), |_| None);
        error_at(file, None, &key, problem)
    })
}

/// A configuration error with one problem: `<file>[:<line>]: [<key>: ]<problem>[; <fix>]`.
pub(crate) fn error_at(
    file: &Path,
    line: Option<usize>,
    key: &str,
    problem: impl fmt::Display,
) -> crate::Error {
    crate::Error::config_problems(vec![problem_at(file, line, key, problem)])
}

/// One typed problem (see [`crate::ConfigError`]).
pub(crate) fn problem_at(
    file: &Path,
    line: Option<usize>,
    key: &str,
    problem: impl fmt::Display,
) -> crate::ConfigError {
    crate::ConfigError::new(file, key, problem).at(line)
}

/// `section` + a serde path (`.` when empty).
pub(crate) fn join_path(section: &str, path: &str) -> String {
    if path.is_empty() || path == "." {
        section.to_owned()
    } else {
        format!("{section}.{path}")
    }
}

/// Turns serde's message about the value at `path` into (the key it is about, the problem and its fix).
/// `example` gives a working `key = value` line for a key, when one is known.
pub(crate) fn explain(
    path: &str,
    message: &str,
    example: impl Fn(&str) -> Option<String>,
) -> (String, String) {
    if let Some((name, known)) = parse_unknown(message, "field") {
        // The path may or may not already end with the unknown key, depending on where serde failed.
        let key = if path.rsplit('.').next() == Some(name.as_str()) {
            path.to_owned()
        } else {
            join_path(path, &name)
        };
        return (key, unknown_key(&name, &known, "key"));
    }
    if let Some((name, known)) = parse_unknown(message, "variant") {
        return (path.to_owned(), unknown_key(&name, &known, "value"));
    }
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
    {
        let key = join_path(path, field);
        let eg = example(&key)
            .map(|e| format!(", e.g. `{e}`"))
            .unwrap_or_default();
        return (key, format!("missing{eg}"));
    }
    let eg = example(path)
        .map(|e| format!("; for example `{e}`"))
        .unwrap_or_default();
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((found, expected)) = rest.rsplit_once(", expected ")
        {
            return (
                path.to_owned(),
                format!(
                    "expected {}, found {found}{eg}",
                    describe_expected(expected)
                ),
            );
        }
    }
    (path.to_owned(), format!("{message}{eg}"))
}

/// serde's names for expected types, in words an operator reads.
pub(crate) fn describe_expected(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number (0 or more)".to_owned(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "a boolean" | "bool" => "true or false".to_owned(),
        "a sequence" => "an array".to_owned(),
        "a map" => "a table".to_owned(),
        other if other.starts_with("struct ") => "a table".to_owned(),
        other => other.to_owned(),
    }
}

/// Parses serde's `unknown field `x`, expected one of `a`, `b`` (or `unknown variant ...`). Pinned by a
/// unit test, so a change of serde's wording is caught.
pub(crate) fn parse_unknown(message: &str, what: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix(&format!("unknown {what} `"))?;
    let (name, rest) = rest.split_once('`')?;
    let known = rest
        .strip_prefix(", expected ")
        .map(|list| {
            list.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Some((name.to_owned(), known))
}

/// `unknown key; did you mean `strikes`? (valid keys: ...)`.
pub(crate) fn unknown_key(name: &str, known: &[String], what: &str) -> String {
    let valid = if known.is_empty() {
        format!("this section takes no {what}s")
    } else {
        format!("valid {what}s: {}", known.join(", "))
    };
    match closest(name, known) {
        Some(best) => format!("unknown {what}; did you mean `{best}`? ({valid})"),
        None => format!("unknown {what} ({valid})"),
    }
}

/// The known name closest to `name`, if one is close enough to be a typo of it.
pub(crate) fn closest<'a>(name: &str, known: &'a [String]) -> Option<&'a str> {
    let name = name.to_lowercase();
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(&name, &k.to_lowercase()), k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k.as_str())
}

/// Line numbers of every key path in the file (`recovery.storm.max_fraction`, `fencer[1].address`).
#[derive(Clone, Debug, Default)]
pub(crate) struct LineIndex(pub(crate) BTreeMap<String, usize>);

impl LineIndex {
    pub(crate) fn walk(&mut self, text: &str, prefix: &str, table: &toml::de::DeTable<'_>) {
        for (key, value) in table {
            let path = join_path_nonempty(prefix, key.get_ref());
            self.0.insert(path.clone(), line_of(text, key.span().start));
            match value.get_ref() {
                toml::de::DeValue::Table(t) => self.walk(text, &path, t),
                toml::de::DeValue::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let item_path = format!("{path}[{i}]");
                        self.0
                            .insert(item_path.clone(), line_of(text, item.span().start));
                        if let toml::de::DeValue::Table(t) = item.get_ref() {
                            self.walk(text, &item_path, t);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// The line of `path`, or of its closest enclosing key in the file.
    pub(crate) fn line(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(line) = self.0.get(p) {
                return Some(*line);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

pub(crate) fn join_path_nonempty(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The 1-based line of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[test]
    fn serde_wording_for_unknown_fields_is_still_what_we_parse() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct T {
            alpha: u8,
            beta: u8,
        }
        let e = toml::from_str::<T>("alpah = 1").unwrap_err();
        let (name, known) =
            parse_unknown(e.message(), "field").unwrap_or_else(|| panic!("{}", e.message()));
        assert_eq!(name, "alpah");
        assert_eq!(known, ["alpha", "beta"]);
    }

    #[test]
    fn closest_only_suggests_plausible_typos() {
        let known: Vec<String> = ["interval", "strikes", "call_timeout"]
            .map(String::from)
            .to_vec();
        assert_eq!(closest("strikez", &known), Some("strikes"));
        assert_eq!(closest("Interval", &known), Some("interval"));
        assert_eq!(closest("zebra", &known), None);
    }
}
