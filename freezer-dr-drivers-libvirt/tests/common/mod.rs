//! Real peers for the libvirt fencer's tests: node XML files for libvirt's `test:///` driver, and a private
//! `libvirtd` serving the test driver on 127.0.0.1 and a unix socket.

// Test harness: a broken test environment is a panic with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use freezer_dr_core::testing::free_port;

use virt::connect::Connect;

/// The compute domains every test starts with: running unless listed in `off`.
pub const COMPUTES: [&str; 3] = ["compute-1", "compute-2", "compute-3"];

fn domain_xml(name: &str, off: bool, in_node: bool) -> String {
    let runstate = if off && in_node {
        "<test:runstate>5</test:runstate>"
    } else {
        ""
    };
    let ns = if in_node {
        " xmlns:test=\"http://libvirt.org/schemas/domain/test/1.0\""
    } else {
        ""
    };
    format!(
        "<domain type=\"test\"{ns}><name>{name}</name><memory>262144</memory>\
         <os><type>hvm</type></os>{runstate}</domain>"
    )
}

/// Writes a node XML for the `test:///` driver with `running` domains running and `off` domains shut off;
/// returns the URI that opens it (each open gets its own fresh copy).
pub fn node_uri(dir: &Path, running: &[&str], off: &[&str]) -> String {
    let mut xml = String::from("<node>\n");
    for d in running {
        xml.push_str(&domain_xml(d, false, true));
        xml.push('\n');
    }
    for d in off {
        xml.push_str(&domain_xml(d, true, true));
        xml.push('\n');
    }
    xml.push_str("</node>\n");
    let path = dir.join("node.xml");
    fs::write(&path, xml).unwrap();
    format!("test://{}", path.display())
}

/// A private `libvirtd` (see [`Libvirtd::start`]), or `None` (the test is skipped) only when the operator
/// asked for it explicitly.
pub fn libvirtd() -> Option<Libvirtd> {
    (!skip_libvirtd()).then(Libvirtd::start)
}

/// Like [`libvirtd`], with SASL on its TCP socket (see [`Libvirtd::start_with_sasl`]).
pub fn libvirtd_with_sasl(user: &str, password: &str) -> Option<Libvirtd> {
    (!skip_libvirtd()).then(|| Libvirtd::start_with_sasl(user, password))
}

fn skip_libvirtd() -> bool {
    if std::env::var("FREEZER_DR_SKIP_LIBVIRTD").as_deref() == Ok("1") {
        eprintln!("FREEZER_DR_SKIP_LIBVIRTD=1: skipping a test that needs a private libvirtd");
        return true;
    }
    false
}

/// A private `libvirtd` serving the test driver, with a holder connection that keeps `test:///default`
/// alive (the daemon resets it when its last client leaves) and has defined and started the compute
/// domains.
pub struct Libvirtd {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    holder: Option<Connect>,
    sasl: Option<(String, String)>,
}

impl Libvirtd {
    /// Starts the daemon and defines [`COMPUTES`], all running.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Like [`Libvirtd::start`], but its TCP socket requires SASL (DIGEST-MD5) with this user and
    /// password (its unix socket, used by the harness and `virsh`, does not).
    pub fn start_with_sasl(user: &str, password: &str) -> Self {
        Self::start_with(Some((user.to_owned(), password.to_owned())))
    }

    fn start_with(sasl: Option<(String, String)>) -> Self {
        // The harness polls the daemon until it answers; libvirt would print each refusal to stderr.
        virt::error::clear_error_callback();
        let dir = tempfile::tempdir().unwrap();
        let mut d = Self {
            port: free_port(),
            dir,
            child: None,
            holder: None,
            sasl,
        };
        d.spawn();
        d
    }

    /// Writes a private Cyrus SASL config and password database; returns the directory for
    /// `SASL_CONF_PATH`.
    fn write_sasl(&self, user: &str, password: &str) -> PathBuf {
        let sasl = self.dir.path().join("sasl");
        fs::create_dir_all(&sasl).unwrap();
        let db = sasl.join("passwd.db");
        fs::write(
            sasl.join("libvirt.conf"),
            format!("mech_list: digest-md5\nsasldb_path: {}\n", db.display()),
        )
        .unwrap();
        let mut child = Command::new("saslpasswd2")
            .args(["-p", "-c", "-a", "libvirt", "-f"])
            .arg(&db)
            .arg(user)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run saslpasswd2 ({e}); install Debian's sasl2-bin"));
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(password.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "saslpasswd2 failed");
        sasl
    }

    /// `test+tcp://127.0.0.1:<port>/default`.
    pub fn tcp_uri(&self) -> String {
        format!("test+tcp://127.0.0.1:{}/default", self.port)
    }

    /// `test+unix:///default?socket=<dir>/libvirt-sock`.
    pub fn unix_uri(&self) -> String {
        format!(
            "test+unix:///default?socket={}",
            self.dir.path().join("libvirt-sock").display()
        )
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("libvirtd.log")
    }

    /// The daemon's log, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn spawn(&mut self) {
        let dir = self.dir.path();
        let drivers = dir.join("drivers");
        fs::create_dir_all(&drivers).unwrap();
        let conf = dir.join("libvirtd.conf");
        fs::write(
            &conf,
            format!(
                "listen_tcp = 1\nlisten_tls = 0\nlisten_addr = \"127.0.0.1\"\ntcp_port = \"{}\"\n\
                 auth_tcp = \"{}\"\nauth_unix_rw = \"none\"\nauth_unix_ro = \"none\"\n\
                 unix_sock_dir = \"{}\"\n",
                self.port,
                if self.sasl.is_some() { "sasl" } else { "none" },
                dir.display()
            ),
        )
        .unwrap();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut cmd = Command::new("libvirtd");
        if let Some((user, password)) = self.sasl.clone() {
            cmd.env("SASL_CONF_PATH", self.write_sasl(&user, &password));
        }
        let child = cmd
            // Without libvirt-daemon-system the qemu driver module dies on its missing user: load no
            // driver modules; the test driver is built into libvirt itself.
            .env("LIBVIRT_DRIVER_DIR", &drivers)
            .args(["-f".as_ref(), conf.as_os_str(), "-p".as_ref()])
            .arg(dir.join("libvirtd.pid"))
            .arg("-l")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start libvirtd ({e}); install Debian's libvirt-daemon and libvirt-clients, \
                     or set FREEZER_DR_SKIP_LIBVIRTD=1 to skip this test"
                )
            });
        self.child = Some(child);
        let uri = self.unix_uri();
        let deadline = Instant::now() + Duration::from_secs(20);
        let holder = loop {
            match Connect::open(Some(&uri)) {
                Ok(c) => break c,
                Err(e) => {
                    if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                        panic!(
                            "libvirtd exited ({status}) before answering on {uri}: {e}\n--- log ---\n{}",
                            self.log()
                        );
                    }
                    assert!(
                        Instant::now() < deadline,
                        "libvirtd did not answer on {uri} within 20 s: {e}\n--- log ---\n{}",
                        self.log()
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        for name in COMPUTES {
            let dom = holder
                .define_domain_xml(&domain_xml(name, false, false))
                .unwrap();
            dom.create().unwrap();
        }
        self.holder = Some(holder);
    }

    fn kill(&mut self) {
        // The holder's socket is about to die; closing it first keeps its drop quiet.
        self.holder = None;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the daemon and starts it again on the same port and socket; `test:///default` starts over, so
    /// the compute domains are defined and started again.
    pub fn restart(&mut self) {
        self.kill();
        let _ = fs::remove_file(self.dir.path().join("libvirtd.pid"));
        self.spawn();
    }

    /// Freezes (`SIGSTOP`) or thaws (`SIGCONT`) the daemon: a peer that accepts but never answers.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {} failed", self.pid());
    }

    /// `virsh -c <uri> <args>` in another process; panics with its output (and the daemon's log) on failure.
    pub fn virsh(&self, args: &[&str]) -> String {
        let out = Command::new("virsh")
            .arg("-c")
            .arg(self.unix_uri())
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run virsh ({e}); install Debian's libvirt-clients"));
        assert!(
            out.status.success(),
            "virsh {args:?} failed: {}{}\n--- libvirtd log ---\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The domain's state as `virsh domstate` prints it in another process (`running`, `shut off`).
    pub fn domstate(&self, domain: &str) -> String {
        self.virsh(&["domstate", domain])
    }
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- libvirtd log ---\n{}", self.log());
        }
        if let Some(child) = &self.child {
            // Closing the holder is a round trip: a frozen daemon must be thawed first.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.kill();
    }
}
