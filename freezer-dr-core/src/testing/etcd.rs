//! A real etcd (Debian `etcd-server`) for tests, started on 127.0.0.1 free ports in a temporary directory.
//!
//! `EtcdServer::start()` returns `None` only when `FREEZER_DR_SKIP_ETCD=1` is set; otherwise an etcd that
//! cannot start fails the test with its log. The process is killed (after a SIGCONT, in case a test froze
//! it) when the value is dropped, and its log is printed if the test is failing.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// A running etcd, owned by one test.
#[derive(Debug)]
pub struct EtcdServer {
    child: Child,
    dir: PathBuf,
    endpoint: String,
}

impl EtcdServer {
    /// Starts etcd and waits until `etcdctl endpoint health` answers (30 s at most), or returns `None`
    /// when `FREEZER_DR_SKIP_ETCD=1`. Panics with a clear message when etcd cannot start.
    pub fn start() -> Option<EtcdServer> {
        if std::env::var("FREEZER_DR_SKIP_ETCD").as_deref() == Ok("1") {
            eprintln!("FREEZER_DR_SKIP_ETCD=1: skipping the etcd tests");
            return None;
        }
        let dir = std::env::temp_dir().join(format!(
            "freezer-dr-etcd-{}-{}",
            std::process::id(),
            free_port()
        ));
        let log = dir.join("etcd.log");
        let (client, peer, metrics) = (free_port(), free_port(), free_port());
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let started = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::File::create(&log))
            .and_then(|stderr| {
                Command::new("etcd")
                    .args(["--name", "t", "--data-dir"])
                    .arg(dir.join("data"))
                    .args(["--listen-client-urls", &endpoint])
                    .args(["--advertise-client-urls", &endpoint])
                    .args(["--listen-peer-urls", &peer_url])
                    .args(["--initial-advertise-peer-urls", &peer_url])
                    .args(["--initial-cluster", &format!("t={peer_url}")])
                    .args([
                        "--listen-metrics-urls",
                        &format!("http://127.0.0.1:{metrics}"),
                    ])
                    .stdout(Stdio::null())
                    .stderr(stderr)
                    .spawn()
            });
        let child = match started {
            Ok(child) => child,
            Err(e) => panic!(
                "cannot start etcd ({e}): install Debian `etcd-server`, or set FREEZER_DR_SKIP_ETCD=1 to \
                 skip these tests explicitly"
            ),
        };
        let etcd = EtcdServer {
            child,
            dir,
            endpoint,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let healthy = Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", &etcd.endpoint, "endpoint", "health"])
                .output()
                .is_ok_and(|o| o.status.success());
            if healthy {
                return Some(etcd);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "etcd did not become healthy on {} within 30s (is Debian `etcd-client` installed for \
             etcdctl?); its log:\n{}",
            etcd.endpoint,
            etcd.log_tail()
        );
    }

    /// The client URL, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The last 40 lines of etcd's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Sends a signal (`"-STOP"`, `"-CONT"`, ...) to the etcd process; panics if `kill` fails.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} etcd failed");
    }

    /// SIGSTOP: etcd keeps its sockets open and answers nothing (a frozen control plane).
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`EtcdServer::freeze`].
    pub fn thaw(&self) {
        self.signal("-CONT");
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- etcd log ({}) ----\n{}",
                self.endpoint,
                self.log_tail()
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
