//! A real Prometheus (Debian `prometheus`) for tests, started on a 127.0.0.1 free port with its storage in
//! a temporary directory, and the package's `promtool`.
//!
//! Both give `None` only when `FREEZER_DR_SKIP_PROMETHEUS=1` is set; otherwise a missing binary or a
//! server that does not come up fails the test with what to install (and the server's log). The server
//! is killed when the value is dropped, and its log is printed if the test is failing.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{ChildGuard, free_port};

/// Scrapes and rule evaluations every second: a test sees a change within a few seconds.
const GLOBAL: &str =
    "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n";

/// What Prometheus logs once it answers queries.
const READY: &str = "Server is ready to receive web requests";

/// What Prometheus logs each time it has (re)loaded its configuration file.
const LOADED: &str = "Completed loading of configuration file";

/// True (and said on stderr) when `FREEZER_DR_SKIP_PROMETHEUS=1` asks to skip.
fn skipped(what: &str) -> bool {
    let skip = std::env::var("FREEZER_DR_SKIP_PROMETHEUS").as_deref() == Ok("1");
    if skip {
        eprintln!("FREEZER_DR_SKIP_PROMETHEUS=1: skipping a test that needs {what}");
    }
    skip
}

/// A running Prometheus, owned by one test.
#[derive(Debug)]
pub struct PrometheusServer {
    child: ChildGuard,
    dir: tempfile::TempDir,
    port: u16,
    url: String,
}

impl PrometheusServer {
    /// Starts Prometheus with `scrape_configs` (what its configuration file holds after the `global`
    /// block, which scrapes and evaluates every second) and waits until it is ready (60 s at most).
    /// `None` only when `FREEZER_DR_SKIP_PROMETHEUS=1`; panics with a clear message (and its log) when
    /// it cannot start.
    pub fn start(scrape_configs: &str) -> Option<Self> {
        Self::start_with_web(scrape_configs, None)
    }

    /// [`PrometheusServer::start`] with a `--web.config.file` holding `web` (TLS, basic authentication);
    /// with a `tls_server_config` the server answers on `https://`.
    pub fn start_with_web(scrape_configs: &str, web: Option<&str>) -> Option<Self> {
        if skipped("a real Prometheus") {
            return None;
        }
        let dir = match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(e) => panic!("cannot make a temporary directory for prometheus: {e}"),
        };
        let port = free_port();
        let path = |name: &str| dir.path().join(name);
        let config = path("prometheus.yml");
        write_config(&config, scrape_configs);
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", path("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if let Some(web) = web {
            write(&path("web.yml"), web);
            cmd.arg(format!("--web.config.file={}", path("web.yml").display()));
        }
        let started =
            std::fs::File::create(path("prometheus.log")).and_then(|log| cmd.stderr(log).spawn());
        let child = match started {
            Ok(child) => ChildGuard(child),
            Err(e) => panic!(
                "cannot start prometheus ({e}): install Debian `prometheus` (tools/test-deps.sh does), \
                 or set FREEZER_DR_SKIP_PROMETHEUS=1 to skip these tests explicitly"
            ),
        };
        let tls = web.is_some_and(|w| w.contains("tls_server_config"));
        let url = format!("{}://127.0.0.1:{port}", if tls { "https" } else { "http" });
        let mut server = Self {
            child,
            dir,
            port,
            url,
        };
        let log = server.file("prometheus.log");
        server.child.wait_until(
            "prometheus",
            Duration::from_secs(60),
            || read(&log).contains(READY),
            || read(&log),
        );
        Some(server)
    }

    /// Its root URL, `http://127.0.0.1:<port>` (`https://` with TLS).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        read(&self.file("prometheus.log"))
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Scrapes `scrape_configs` from now on (the file rewritten, then SIGHUP), once Prometheus says it
    /// loaded it (30 s at most): a target left out is no longer scraped and its series go stale.
    pub fn reload(&mut self, scrape_configs: &str) {
        let log = self.file("prometheus.log");
        let loads = read(&log).matches(LOADED).count();
        write_config(&self.file("prometheus.yml"), scrape_configs);
        let sent = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "kill -HUP prometheus failed");
        self.child.wait_until(
            "prometheus (reloading its configuration)",
            Duration::from_secs(30),
            || read(&log).matches(LOADED).count() > loads,
            || read(&log),
        );
    }

    /// The value of the instant query `promql`'s only sample, evaluated now; `None` when Prometheus
    /// does not answer, refuses the query, or the result has not exactly one sample. Plain HTTP only.
    pub fn query(&self, promql: &str) -> Option<f64> {
        assert!(
            self.url.starts_with("http:"),
            "PrometheusServer::query speaks plain HTTP"
        );
        let (code, body) = http_get(
            self.port,
            &format!("/api/v1/query?query={}", percent_encoded(promql)),
        )?;
        if code != 200 {
            return None;
        }
        let answer: serde_json::Value = serde_json::from_str(&body).ok()?;
        match answer["data"]["result"].as_array()?.as_slice() {
            [sample] => sample["value"][1].as_str()?.parse().ok(),
            _ => None,
        }
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- prometheus log ({}) ----\n{}", self.url, self.log());
        }
    }
}

/// A file of the server's, empty when it cannot be read (yet).
fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Writes a file of the server's; panics when it cannot (test setup: the test cannot go on).
fn write(path: &Path, text: &str) {
    if let Err(e) = std::fs::write(path, text) {
        panic!("cannot write {}: {e}", path.display());
    }
}

/// Writes the configuration file: [`GLOBAL`], then `scrape_configs`.
fn write_config(path: &Path, scrape_configs: &str) {
    write(path, &format!("{GLOBAL}{scrape_configs}"));
}

/// `text` with every byte but `A-Za-z0-9-_.~` written `%XX`, for a URL's query.
fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One HTTP/1.0 `GET path` on 127.0.0.1:`port`: the status code and the body, or `None` if nothing
/// answers (within 5 s) or the answer is not HTTP.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(conn, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    conn.read_to_string(&mut text).ok()?;
    let code = text.split(' ').nth(1)?.parse().ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    Some((code, body.to_owned()))
}

/// Runs `promtool` (Debian `prometheus`) with `args` in `dir`: its stdout and stderr, after asserting it
/// succeeded. `None` only when `FREEZER_DR_SKIP_PROMETHEUS=1`; panics when it cannot run.
pub fn promtool(dir: &Path, args: &[&str]) -> Option<String> {
    if skipped("promtool") {
        return None;
    }
    let out = match Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!(
            "cannot run promtool ({e}): install Debian `prometheus` (tools/test-deps.sh does), or set \
             FREEZER_DR_SKIP_PROMETHEUS=1 to skip these tests explicitly"
        ),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    Some(text)
}
