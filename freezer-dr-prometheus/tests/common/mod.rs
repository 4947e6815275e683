//! Test harness: a real Prometheus (Debian `prometheus`) started on 127.0.0.1 with its storage in a
//! temporary directory and a 1 s scrape interval, scraping small HTTP targets the tests start and kill;
//! test certificates made with the `openssl` CLI.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use freezer_dr_core::{Health, HostHealth, HostId, Monitor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// `FREEZER_DR_SKIP_PROMETHEUS=1` skips the tests that need a real Prometheus (never set in CI).
pub fn skip() -> bool {
    if std::env::var("FREEZER_DR_SKIP_PROMETHEUS").as_deref() == Ok("1") {
        eprintln!("FREEZER_DR_SKIP_PROMETHEUS=1: skipping a test that needs a real Prometheus");
        return true;
    }
    false
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A scrape target: serves a metrics page on 127.0.0.1 until killed. Every connection is answered
/// inside the one task (and closed), so killing it leaves nothing of it answering.
pub struct Target {
    pub address: String,
    task: Option<JoinHandle<()>>,
}

impl Target {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    continue;
                };
                let mut buf = [0u8; 4096];
                let mut read = 0;
                // Read the request head (Prometheus sends no body).
                while read < buf.len() {
                    match tokio::time::timeout(Duration::from_secs(1), conn.read(&mut buf[read..]))
                        .await
                    {
                        Ok(Ok(n)) if n > 0 => {
                            read += n;
                            if buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                                break;
                            }
                        }
                        _ => break,
                    }
                }
                let body = "# TYPE freezer_dr_test_target gauge\nfreezer_dr_test_target 1\n";
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(resp.as_bytes()).await;
                let _ = conn.shutdown().await;
            }
        });
        Self {
            address,
            task: Some(task),
        }
    }

    /// Stops answering: the listener is closed, connections are refused.
    pub async fn kill(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// One scrape target group: its addresses and the extra labels Prometheus gives their series.
pub struct Group<'a> {
    pub targets: Vec<&'a str>,
    pub labels: Vec<(&'a str, &'a str)>,
}

/// A running Prometheus; killed on drop, its log printed if the test panicked.
pub struct Prometheus {
    pub url: String,
    pub port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Child,
    web: Option<String>,
    dir: tempfile::TempDir,
}

/// The `scrape_configs` of job `node`: one static group per entry.
fn scrape_config(groups: &[Group<'_>]) -> String {
    let mut s = String::from(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: node\n    static_configs:\n",
    );
    for g in groups {
        let targets: Vec<String> = g.targets.iter().map(|t| format!("{t:?}")).collect();
        s.push_str(&format!("      - targets: [{}]\n", targets.join(", ")));
        if !g.labels.is_empty() {
            s.push_str("        labels:\n");
            for (k, v) in &g.labels {
                s.push_str(&format!("          {k}: {v:?}\n"));
            }
        }
    }
    s
}

impl Prometheus {
    /// Starts Prometheus scraping `groups` as job `node`; `web` is a `--web.config.file` body (TLS,
    /// basic auth) written next to the config. Fails the test, with its log, if it does not come up.
    pub fn start(groups: &[Group<'_>], web: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, scrape_config(groups)).unwrap();
        let port = free_port();
        let log = dir.path().join("prometheus.log");
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-lifecycle")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(w) = web {
            let path = dir.path().join("web.yml");
            std::fs::write(&path, w).unwrap();
            cmd.arg(format!("--web.config.file={}", path.display()));
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start prometheus (Debian package `prometheus`, installed by tools/test-deps.sh): \
                 {e}; set FREEZER_DR_SKIP_PROMETHEUS=1 to skip"
            )
        });
        let scheme = if web.is_some_and(|w| w.contains("tls_server_config")) {
            "https"
        } else {
            "http"
        };
        let mut p = Self {
            url: format!("{scheme}://127.0.0.1:{port}"),
            port,
            config,
            log,
            child,
            web: web.map(str::to_owned),
            dir,
        };
        p.wait_ready();
        p
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self
                .log_text()
                .contains("Server is ready to receive web requests")
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "prometheus exited ({status}) before it was ready; set FREEZER_DR_SKIP_PROMETHEUS=1 \
                     to skip. Its log:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "prometheus was not ready within 60 s; set FREEZER_DR_SKIP_PROMETHEUS=1 to skip. Its \
                 log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Scrapes `groups` from now on (the config rewritten, then `POST /-/reload`): a target left out
    /// is no longer scraped and its series go stale.
    pub async fn rescrape(&self, groups: &[Group<'_>]) {
        std::fs::write(&self.config, scrape_config(groups)).unwrap();
        let resp = reqwest::Client::new()
            .post(format!("{}/-/reload", self.url))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "reload: {}", resp.status());
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- prometheus log ----\n{}", self.log_text());
        }
    }
}

/// The health of `host` in one observation.
pub fn health_of(seen: &[HostHealth], host: &str) -> Option<Health> {
    seen.iter()
        .find(|h| h.host == HostId::from(host))
        .map(|h| h.health.clone())
}

/// Observes until `ok` holds for an observation (Prometheus needs a few scrapes to notice a change),
/// or fails after `within` with the last observation.
pub async fn observe_until(
    m: &dyn Monitor,
    within: Duration,
    what: &str,
    ok: impl Fn(&[HostHealth]) -> bool,
) -> Vec<HostHealth> {
    let deadline = Instant::now() + within;
    loop {
        let seen = m.observe().await;
        if let Ok(s) = &seen
            && ok(s)
        {
            return s.clone();
        }
        assert!(
            Instant::now() < deadline,
            "not {what} within {within:?}; last observation: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A test CA and a server certificate for 127.0.0.1 it signed, made with the `openssl` CLI.
pub struct Certs {
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    _dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI (Debian package openssl) is needed to make test certificates");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Certs {
    pub fn generate() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for ca in ["ca", "other-ca"] {
            let (key, pem, subj) = (
                format!("{ca}.key"),
                format!("{ca}.pem"),
                format!("/CN=freezer-dr test {ca}"),
            );
            let mut args = vec!["req", "-x509", "-days", "2"];
            args.extend(ec);
            args.extend([
                "-keyout",
                &key,
                "-out",
                &pem,
                "-subj",
                &subj,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ]);
            openssl(d, &args);
        }
        let mut args = vec!["req"];
        args.extend(ec);
        args.extend([
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        openssl(d, &args);
        std::fs::write(
            d.join("leaf.ext"),
            "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nkeyUsage=digitalSignature\n\
             extendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "leaf.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "leaf.ext",
                "-out",
                "leaf.pem",
            ],
        );
        Self {
            ca: d.join("ca.pem"),
            other_ca: d.join("other-ca.pem"),
            cert: d.join("leaf.pem"),
            key: d.join("leaf.key"),
            _dir: dir,
        }
    }
}

/// A bcrypt hash of `password` for Prometheus's `basic_auth_users` (Python's `crypt`, glibc's
/// libxcrypt: Debian 12's `python3` has both).
pub fn bcrypt(password: &str) -> String {
    let out = Command::new("python3")
        .args([
            "-W",
            "ignore",
            "-c",
            "import crypt, os; print(crypt.crypt(os.environ['PW'], crypt.mksalt(crypt.METHOD_BLOWFISH)))",
        ])
        .env("PW", password)
        .output()
        .expect("python3 is needed to hash the test password");
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success() && hash.starts_with("$2"),
        "python3 crypt did not make a bcrypt hash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    hash
}
