//! Test harness: small HTTP targets the tests start and kill, for a real Prometheus (core's
//! `testing::PrometheusServer`) to scrape as job `node`.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::process::Command;
use std::time::{Duration, Instant};

use freezer_dr_core::{Health, HostHealth, HostId, Monitor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

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

/// The `scrape_configs` of job `node`: one static group per entry.
pub fn scrape_configs(groups: &[Group<'_>]) -> String {
    let mut s = String::from("scrape_configs:\n  - job_name: node\n    static_configs:\n");
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

/// The health of `host` in one observation.
pub fn health_of(seen: &[HostHealth], host: &str) -> Option<Health> {
    seen.iter()
        .find(|h| h.host == HostId::from(host))
        .map(|h| h.health.clone())
}

/// How long a test waits for Prometheus to notice a change (a few scrapes, 1 s apart, suffice).
const WAIT: Duration = Duration::from_secs(40);

/// Observes until `ok` holds for an observation, or fails after [`WAIT`] with the last observation.
pub async fn observe_until(
    m: &dyn Monitor,
    what: &str,
    ok: impl Fn(&[HostHealth]) -> bool,
) -> Vec<HostHealth> {
    let deadline = Instant::now() + WAIT;
    loop {
        let seen = m.observe().await;
        if let Ok(s) = &seen
            && ok(s)
        {
            return s.clone();
        }
        assert!(
            Instant::now() < deadline,
            "not {what} within {WAIT:?}; last observation: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
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
