//! The project's OpenStack lab (`lab/`) as tests drive it (feature `lab`: a dev-dependency of this
//! crate's and freezer-dr-cli's tests, never of a binary): [`Lab`] starts a lab script in a temporary
//! directory, reads the `lab.env` it writes, shows its logs when the test fails and stops it; [`Admin`]
//! is the test's own admin client for Nova (plain REST, not the crate under test).
//!
//! Test harness code: a broken lab is a panic with what went wrong.

// Test harness code: panicking is how it fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};

/// Which lab to start.
#[derive(Clone, Debug)]
pub struct LabSpec {
    /// What it is called in messages: `the OpenStack lab`.
    pub name: &'static str,
    /// Its start script, relative to the repository: `lab/openstack/up.sh`. It is given `--dir <dir>`
    /// and [`LabSpec::args`], and writes `<dir>/lab.env`.
    pub up: &'static str,
    /// Its stop script, given the directory: `lab/openstack/down.sh`.
    pub down: &'static str,
    /// Its install script, named when the lab does not start: `lab/openstack/install.sh`.
    pub install: &'static str,
    /// More arguments for the start script.
    pub args: Vec<String>,
    /// The variable that skips the test when set to `1` (and only then: a lab that cannot start fails
    /// the test).
    pub skip_var: &'static str,
    /// The prefix of the temporary directory under `/tmp`.
    pub prefix: &'static str,
}

/// A running lab; stopped (its logs shown first if the test failed) when dropped.
#[derive(Debug)]
pub struct Lab {
    dir: tempfile::TempDir,
    env: BTreeMap<String, String>,
    down: &'static str,
    logs: Vec<(String, usize)>,
}

/// How often [`Lab::start`] tries to start a lab before it fails the test.
const START_TRIES: usize = 2;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

impl Lab {
    /// Starts the lab; `None` when [`LabSpec::skip_var`] is `1`. Panics when it does not start in
    /// [`START_TRIES`] tries, each on a fresh directory.
    pub fn start(spec: &LabSpec) -> Option<Lab> {
        if std::env::var(spec.skip_var).as_deref() == Ok("1") {
            eprintln!(
                "{}=1: the tests on {} are skipped",
                spec.skip_var, spec.name
            );
            return None;
        }
        // A lab of a dozen processes on a loaded 2-core machine may fail to start once (CI saw its computes
        // never report, once in many runs): a second try on a fresh directory, the first failure shown in
        // full. Two failures fail the test.
        let mut failures = Vec::new();
        let (dir, started) = loop {
            let dir = tempfile::Builder::new()
                .prefix(spec.prefix)
                .tempdir_in("/tmp")
                .expect("temp dir");
            let started = Instant::now();
            let out = Command::new("bash")
                .arg(repo().join(spec.up))
                .arg("--dir")
                .arg(dir.path())
                .args(&spec.args)
                .output()
                .unwrap_or_else(|e| panic!("run {}: {e}", spec.up));
            if out.status.success() {
                break (dir, started);
            }
            let failure = format!(
                "{} did not start ({} exited {} after {:.0?}); this test needs it (install: {}; skip only \
                 with {}=1)\n--- stdout\n{}\n--- stderr\n{}",
                spec.name,
                spec.up,
                out.status,
                started.elapsed(),
                spec.install,
                spec.skip_var,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            failures.push(failure);
            if failures.len() == START_TRIES {
                panic!(
                    "{}",
                    failures.join("\n\n--- and again, on a fresh directory:\n")
                );
            }
            eprintln!(
                "{}\n--- starting it again on a fresh directory",
                failures[0]
            );
        };
        eprintln!("lab up in {:.0?}", started.elapsed());
        let text = std::fs::read_to_string(dir.path().join("lab.env")).expect("lab.env");
        let env = text
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
            .collect();
        Some(Lab {
            dir,
            env,
            down: spec.down,
            logs: Vec::new(),
        })
    }

    /// When the test fails, the last `lines` lines of `file` (relative to the lab's directory) are shown
    /// before the lab stops, in the order they were added.
    pub fn show_on_failure(&mut self, file: impl Into<String>, lines: usize) {
        self.logs.push((file.into(), lines));
    }

    /// A variable of `lab.env`.
    pub fn var(&self, k: &str) -> &str {
        self.env
            .get(k)
            .unwrap_or_else(|| panic!("{k} missing from lab.env"))
    }

    /// Every variable of `lab.env`.
    pub fn env(&self) -> &BTreeMap<String, String> {
        &self.env
    }

    /// The lab's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A path in the lab's directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `lab/openstack/compute.sh DIR ACTION HOST`: `kill` crashes a compute, `start` repairs it.
    pub fn compute(&self, action: &str, host: &str) {
        let out = Command::new("bash")
            .arg(repo().join("lab/openstack/compute.sh"))
            .arg(self.dir.path())
            .args([action, host])
            .output()
            .expect("run compute.sh");
        assert!(
            out.status.success(),
            "compute.sh {action} {host}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The lab's admin credentials (project `admin`, domain `Default`, `RegionOne`).
    pub fn auth(&self) -> crate::AuthConfig {
        crate::AuthConfig {
            auth_url: Some(self.var("OS_AUTH_URL").to_owned()),
            username: Some("admin".into()),
            password: Some(freezer_dr_core::Secret::new(self.var("OS_PASSWORD"))),
            project_name: Some("admin".into()),
            user_domain_name: Some("Default".into()),
            project_domain_name: Some("Default".into()),
            region_name: Some("RegionOne".into()),
            ..Default::default()
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (name, lines) in &self.logs {
                let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(*lines).collect();
                eprintln!("---- {name} (last lines)");
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
        let _ = Command::new("bash")
            .arg(repo().join(self.down))
            .arg(self.dir.path())
            .output();
    }
}

/// The test's own admin calls to Nova (plain REST, not the crate under test), at microversion 2.74.
#[derive(Debug)]
pub struct Admin {
    http: reqwest::Client,
    token: String,
    nova: String,
}

impl Admin {
    /// Logs in to the lab's Keystone as `admin`.
    pub async fn new(lab: &Lab) -> Admin {
        let http = reqwest::Client::new();
        let r = http
            .post(format!("{}/auth/tokens", lab.var("OS_AUTH_URL")))
            .json(&json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": "admin", "domain": {"name": "Default"}, "password": lab.var("OS_PASSWORD")}}},
                "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}}))
            .send()
            .await
            .expect("keystone");
        assert!(r.status().is_success(), "admin token: {}", r.status());
        let token = r.headers()["x-subject-token"].to_str().unwrap().to_owned();
        Admin {
            http,
            token,
            nova: lab.var("LAB_NOVA_URL").to_owned(),
        }
    }

    /// One call to Nova; its JSON body (`null` when empty). A status other than 2xx is a panic.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.nova))
            .header("X-Auth-Token", &self.token)
            .header("OpenStack-API-Version", "compute 2.74");
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("nova");
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// Boots a server on `host` (flavor `lab-tiny`, no network, metadata `ha = <ha>`); its id.
    pub async fn boot(&self, name: &str, host: &str, ha: &str, image: &str) -> String {
        let b = self
            .call(
                reqwest::Method::POST,
                "/servers",
                Some(json!({"server": {
                    "name": name, "imageRef": image, "flavorRef": "lab-tiny", "networks": "none",
                    "host": host, "metadata": {"ha": ha}}})),
            )
            .await;
        b["server"]["id"].as_str().unwrap().to_owned()
    }

    /// A server's record.
    pub async fn server(&self, id: &str) -> Value {
        self.get(&format!("/servers/{id}")).await["server"].clone()
    }

    /// How many times Nova was asked to evacuate this server (its instance actions).
    pub async fn evacuations(&self, id: &str) -> usize {
        self.list(
            &format!("/servers/{id}/os-instance-actions"),
            "instanceActions",
        )
        .await
        .iter()
        .filter(|a| a["action"] == "evacuate")
        .count()
    }

    /// The `nova-compute` service record of `host` (exactly that host).
    pub async fn service(&self, host: &str) -> Value {
        self.list(
            &format!("/os-services?binary=nova-compute&host={host}"),
            "services",
        )
        .await
        .into_iter()
        .find(|s| s["host"] == host)
        .unwrap_or_else(|| panic!("no service on {host}"))
    }

    /// The array `key` of the reply to `GET path`.
    async fn list(&self, path: &str, key: &str) -> Vec<Value> {
        let v = self.get(path).await;
        match v[key].as_array() {
            Some(items) => items.clone(),
            None => panic!("GET {path}: no `{key}` list in {v}"),
        }
    }
}
