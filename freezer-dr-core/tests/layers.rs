//! Core is a one-way stack of layers: each module uses only the modules of its own layer or below, and no
//! two modules use each other (directly or through others). Read from the sources, so a new `use` that
//! breaks the stack fails here, naming the file and the module it reached.
//!
//! The layers, bottom up (DESIGN §2): domain types → role traits → engine → journal → registry and
//! diagnostics → runtime → etcd (HA: its `[ha]` section, client, lease, election, journal; it runs the
//! runtime while it leads) → config (the file format: parses every section, `[ha]` included, and builds
//! the pipeline) → checks and setup (what a binary does with a configuration: check its drivers against
//! their peers, choose its journal) → testing (the fakes, for tests only).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const LAYERS: &[&[&str]] = &[
    &["error", "host", "secret", "report", "fence"],
    &["monitor", "fencer", "evacuator", "notifier", "directory"],
    &["engine"],
    &["journal"],
    &["diagnostics", "registry"],
    &["runtime"],
    &["etcd"],
    &["config"],
    &["checks", "setup"],
    &["testing"],
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// Every `.rs` file below `dir`, with the top-level module it belongs to.
fn files(dir: &Path, module: Option<&str>, out: &mut Vec<(String, PathBuf)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.map(|e| e.path()).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        let owner = module.map(str::to_owned).unwrap_or_else(|| name.clone());
        if path.is_dir() {
            files(&path, Some(&owner), out);
        } else if path.extension().is_some_and(|e| e == "rs")
            && !(module.is_none() && name == "lib")
            && !unit_tests(&path)
        {
            out.push((owner, path));
        }
    }
}

/// A file of unit tests (`tests.rs`, or below a `tests/` folder of a module): it may reach any layer.
fn unit_tests(path: &Path) -> bool {
    path.file_stem().is_some_and(|s| s == "tests")
        || path
            .ancestors()
            .skip(1)
            .take_while(|p| *p != src())
            .any(|p| p.ends_with("tests"))
}

/// The code of a file without its `#[cfg(test)] mod tests { … }` block and without comments (a unit
/// test may reach any layer: it tests, it is not part of the stack).
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut skip_depth: Option<i32> = None;
    let mut depth = 0i32;
    let mut pending_test = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("//") {
            continue;
        }
        if t.starts_with("#[cfg(test)]") || t.starts_with("#[cfg(all(test,") {
            pending_test = true;
            continue;
        }
        let opens = line.matches('{').count() as i32;
        let closes = line.matches('}').count() as i32;
        if pending_test && t.starts_with("mod ") {
            pending_test = false;
            if t.ends_with(';') {
                continue;
            }
            skip_depth = Some(depth);
            depth += opens - closes;
            continue;
        }
        pending_test = false;
        depth += opens - closes;
        if let Some(d) = skip_depth {
            if depth <= d {
                skip_depth = None;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The names the crate root re-exports, and the module each comes from (`pub use engine::{Command, …}`).
fn root_exports() -> BTreeMap<String, String> {
    let lib =
        std::fs::read_to_string(src().join("lib.rs")).unwrap_or_else(|e| panic!("lib.rs: {e}"));
    let flat = code(&lib).replace('\n', " ");
    let mut out = BTreeMap::new();
    for stmt in flat.split(';') {
        let Some(rest) = stmt.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, names)) = rest.split_once("::") else {
            continue;
        };
        let names = names.trim().trim_start_matches('{').trim_end_matches('}');
        for n in names.split(',') {
            let n = n.trim();
            let last = n.rsplit("::").next().unwrap_or(n);
            let last = last.split(" as ").last().unwrap_or(last).trim();
            if !last.is_empty() {
                out.insert(last.to_owned(), module.trim().to_owned());
            }
        }
    }
    out
}

/// The top-level modules a file's code names through `crate::`.
fn uses(code: &str, exports: &BTreeMap<String, String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut push = |ident: &str| {
        let ident = ident.trim();
        if ident.is_empty() || ident == "self" {
            return;
        }
        if layer_of(ident).is_some() {
            out.insert(ident.to_owned());
        } else if let Some(m) = exports.get(ident) {
            out.insert(m.clone());
        }
    };
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{A, b::C, …}`: the first segment of each item.
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                push(item.trim().split("::").next().unwrap_or_default());
            }
        } else {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            push(&rest[..end]);
        }
    }
    out
}

#[test]
fn core_is_a_one_way_stack_of_layers() {
    let mut all = Vec::new();
    files(&src(), None, &mut all);
    let exports = root_exports();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for (module, path) in &all {
        let Some(own) = layer_of(module) else {
            problems.push(format!(
                "{}: module `{module}` is in no layer: add it to LAYERS (and to DESIGN §2)",
                path.display()
            ));
            continue;
        };
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for used in uses(&code(&text), &exports) {
            if used == *module {
                continue;
            }
            graph
                .entry(module.clone())
                .or_default()
                .insert(used.clone());
            let theirs = layer_of(&used).unwrap_or(usize::MAX);
            if theirs > own {
                problems.push(format!(
                    "{}: `{module}` (layer {own}) uses `{used}` (layer {theirs}), a layer above it",
                    path.display()
                ));
            }
        }
    }
    // Within a layer, too: no two modules may reach each other.
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<String> = graph[start].iter().cloned().collect();
        while let Some(m) = stack.pop() {
            if m == *start {
                problems.push(format!(
                    "`{start}` reaches itself through the modules it uses: a cycle"
                ));
                break;
            }
            if seen.insert(m.clone()) {
                stack.extend(graph.get(&m).into_iter().flatten().cloned());
            }
        }
    }
    assert!(
        problems.is_empty(),
        "core's layers are broken:\n{}",
        problems.join("\n")
    );
    // The test reads something: every layer but `testing`-less builds has modules, and uses were seen.
    assert!(all.len() > 20, "too few files read: {all:?}");
    assert!(
        graph.get("runtime").is_some_and(|u| u.contains("engine")),
        "{graph:?}"
    );
}

#[test]
fn the_reader_sees_uses_and_skips_unit_tests() {
    let exports = BTreeMap::from([("Fenced".to_owned(), "fence".to_owned())]);
    let text = "use crate::{Fenced, engine::Stage};\nuse crate::config::X;\n#[cfg(test)]\nmod tests {\n    use crate::runtime::Y;\n}\n#[cfg(all(test, feature = \"testing\"))]\nmod more {\n    use crate::testing::Z;\n}\nfn f() { crate::journal::open(); }\n";
    let got = uses(&code(text), &exports);
    let want: BTreeSet<String> = ["fence", "engine", "config", "journal"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(got, want);
}
