//! Real peers for the Redfish fencer's tests: a private `libvirtd` serving libvirt's test driver, and
//! sushy-tools' `sushy-emulator` (from the venv `tests/setup.sh` installs) exposing one of its domains
//! as a Redfish BMC on 127.0.0.1. Results are read back with `virsh` on the same daemon, never through
//! the fencer's own client.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod scripted;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use freezer_dr_core::testing::free_port;
use freezer_dr_core::testing::{ChildGuard, TestCerts};

use freezer_dr_drivers_redfish::{RedfishConfig, RedfishFencer};

pub const USER: &str = "admin";
pub const PASSWORD: &str = "emulator-Pass-31";

/// The compute domains the daemon defines, all running.
pub const COMPUTES: [&str; 2] = ["compute-1", "compute-2"];

/// Skips the test only when `FREEZER_DR_SKIP_REDFISH=1` is set explicitly.
pub fn skip() -> bool {
    let skip = std::env::var("FREEZER_DR_SKIP_REDFISH").as_deref() == Ok("1");
    if skip {
        eprintln!(
            "FREEZER_DR_SKIP_REDFISH=1: skipping a test that needs sushy-emulator and libvirtd"
        );
    }
    skip
}

/// A private `libvirtd` (see [`Libvirtd::start`]), or `None` (the test is skipped) only when
/// `FREEZER_DR_SKIP_REDFISH=1` is set explicitly.
pub fn libvirtd() -> Option<Libvirtd> {
    (!skip()).then(Libvirtd::start)
}

fn venv() -> PathBuf {
    PathBuf::from(
        std::env::var("FREEZER_DR_REDFISH_VENV")
            .unwrap_or_else(|_| "/opt/freezer-dr-redfish-venv".into()),
    )
}

fn need(ok: bool, what: &str) {
    assert!(
        ok,
        "{what} is missing: run freezer-dr-drivers-redfish/tests/setup.sh (as .ci/run does), or set \
         FREEZER_DR_SKIP_REDFISH=1 to skip these tests"
    );
}

/// A private `libvirtd` with the test driver, the compute domains defined and running, and a
/// `virsh event` process holding a connection open (the daemon resets `test:///default` when its
/// last client leaves).
pub struct Libvirtd {
    // In drop order: the holder, then the daemon, then its directory.
    holder: ChildGuard,
    child: ChildGuard,
    pub dir: tempfile::TempDir,
}

impl Libvirtd {
    pub fn start() -> Libvirtd {
        need(
            Command::new("libvirtd").arg("--version").output().is_ok(),
            "libvirtd (Debian libvirt-daemon)",
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let d = d.as_path();
        fs::create_dir(d.join("drivers")).unwrap();
        fs::write(
            d.join("libvirtd.conf"),
            format!(
                "listen_tcp = 0\nlisten_tls = 0\nauth_unix_rw = \"none\"\nauth_unix_ro = \"none\"\n\
                 unix_sock_dir = \"{}\"\n",
                d.display()
            ),
        )
        .unwrap();
        let log = fs::File::create(d.join("libvirtd.log")).unwrap();
        let child = Command::new("libvirtd")
            // No driver modules: the qemu module dies without its system user; test is built in.
            .env("LIBVIRT_DRIVER_DIR", d.join("drivers"))
            .arg("-f")
            .arg(d.join("libvirtd.conf"))
            .arg("-p")
            .arg(d.join("libvirtd.pid"))
            .current_dir(d)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start libvirtd");
        let placeholder = Command::new("true").spawn().unwrap();
        let mut daemon = Libvirtd {
            holder: ChildGuard(placeholder),
            child: ChildGuard(child),
            dir,
        };
        let start = Instant::now();
        while daemon.try_virsh(&["list", "--all"]).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "libvirtd did not answer within 20 s\n{}",
                daemon.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon.holder = ChildGuard(
            Command::new("virsh")
                .args(["-c", &daemon.uri(), "event", "--all", "--loop"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("cannot run virsh"),
        );
        // The holder connects asynchronously; domains defined before it did would vanish with the
        // definer's connection, so define, then check from another connection, until they stay.
        for attempt in 0.. {
            std::thread::sleep(Duration::from_millis(200));
            for name in COMPUTES {
                if daemon.try_virsh(&["domstate", name]).is_err() {
                    let xml = d.join(format!("{name}.xml"));
                    fs::write(
                        &xml,
                        format!(
                            "<domain type=\"test\"><name>{name}</name><memory>262144</memory>\
                             <os><type>hvm</type></os></domain>"
                        ),
                    )
                    .unwrap();
                    daemon.virsh(&["define", xml.to_str().unwrap()]);
                    daemon.virsh(&["start", name]);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
            if COMPUTES
                .iter()
                .all(|n| daemon.try_virsh(&["domstate", n]).as_deref() == Ok("running"))
            {
                break;
            }
            assert!(
                attempt < 20,
                "the test domains do not stay defined\n{}",
                daemon.logs()
            );
        }
        daemon
    }

    pub fn uri(&self) -> String {
        format!(
            "test+unix:///default?socket={}",
            self.dir.path().join("libvirt-sock").display()
        )
    }

    fn try_virsh(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("virsh")
            .arg("-c")
            .arg(self.uri())
            .args(args)
            .output()
            .map_err(|e| format!("cannot run virsh ({e}); install Debian's libvirt-clients"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// `virsh <args>` on the daemon, in another process.
    pub fn virsh(&self, args: &[&str]) -> String {
        self.try_virsh(args)
            .unwrap_or_else(|e| panic!("virsh {args:?} failed: {e}\n{}", self.logs()))
    }

    /// The domain's state as `virsh domstate` prints it (`running`, `shut off`).
    pub fn domstate(&self, domain: &str) -> String {
        self.virsh(&["domstate", domain])
    }

    pub fn uuid(&self, domain: &str) -> String {
        self.virsh(&["domuuid", domain])
    }

    pub fn logs(&self) -> String {
        let log = fs::read_to_string(self.dir.path().join("libvirtd.log")).unwrap_or_default();
        format!("--- libvirtd log ---\n{log}")
    }
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// How an emulator is started.
#[derive(Default)]
pub struct Options<'a> {
    /// Serve HTTPS with these certificates.
    pub tls: Option<&'a TestCerts>,
    /// Only these domains are systems (default: the one domain given to `start`).
    pub all_domains: bool,
}

/// `sushy-emulator` on 127.0.0.1 with HTTP basic authentication (user [`USER`], [`PASSWORD`]),
/// backed by `libvirtd`: the BMC of `domain` (only that system is listed, like a real BMC).
pub struct Emulator {
    // First: stopped before its directory is removed.
    child: ChildGuard,
    pub port: u16,
    pub scheme: &'static str,
    dir: tempfile::TempDir,
}

impl Emulator {
    /// An emulator for `domain` that lists every domain of `libvirtd` (several systems).
    pub fn all_domains(libvirtd: &Libvirtd, domain: &str) -> Emulator {
        let opts = Options {
            all_domains: true,
            ..Options::default()
        };
        Self::start(libvirtd, domain, opts)
    }

    /// An emulator for `domain` over TLS with `certs`' server certificate.
    pub fn tls(libvirtd: &Libvirtd, domain: &str, certs: &TestCerts) -> Emulator {
        let opts = Options {
            tls: Some(certs),
            ..Options::default()
        };
        Self::start(libvirtd, domain, opts)
    }

    pub fn start(libvirtd: &Libvirtd, domain: &str, opts: Options<'_>) -> Emulator {
        let venv = venv();
        let bin = venv.join("bin/sushy-emulator");
        need(bin.exists(), &format!("{} (sushy-tools)", bin.display()));
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Its htpasswd takes bcrypt only: hashed by the venv's bcrypt, the password on stdin.
        let mut hash = Command::new(venv.join("bin/python"))
            .args([
                "-c",
                "import sys, bcrypt; print(bcrypt.hashpw(sys.stdin.read().encode(), bcrypt.gensalt(4)).decode())",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        hash.stdin
            .take()
            .unwrap()
            .write_all(PASSWORD.as_bytes())
            .unwrap();
        let out = hash.wait_with_output().unwrap();
        need(
            out.status.success(),
            "python bcrypt in the sushy-tools venv",
        );
        let hashed = String::from_utf8(out.stdout).unwrap();
        fs::write(d.join("htpasswd"), format!("{USER}:{}\n", hashed.trim())).unwrap();
        let port = free_port();
        let mut conf = format!(
            "SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\nSUSHY_EMULATOR_LISTEN_PORT = {port}\n\
             SUSHY_EMULATOR_LIBVIRT_URI = '{}'\nSUSHY_EMULATOR_AUTH_FILE = '{}'\n",
            libvirtd.uri(),
            d.join("htpasswd").display()
        );
        if !opts.all_domains {
            conf.push_str(&format!(
                "SUSHY_EMULATOR_ALLOWED_INSTANCES = ['{}']\n",
                libvirtd.uuid(domain)
            ));
        }
        if let Some(c) = opts.tls {
            conf.push_str(&format!(
                "SUSHY_EMULATOR_SSL_CERT = '{}'\nSUSHY_EMULATOR_SSL_KEY = '{}'\n",
                c.cert.display(),
                c.key.display()
            ));
        }
        fs::write(d.join("emulator.conf"), conf).unwrap();
        let log = fs::File::create(d.join("emulator.log")).unwrap();
        let child = Command::new(&bin)
            .arg("--config")
            .arg(d.join("emulator.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start sushy-emulator");
        let mut e = Emulator {
            child: ChildGuard(child),
            port,
            scheme: if opts.tls.is_some() { "https" } else { "http" },
            dir,
        };
        let start = Instant::now();
        while e.curl("/redfish/v1/").is_err() {
            if let Ok(Some(status)) = e.child.try_wait() {
                panic!("sushy-emulator exited ({status})\n{}", e.logs());
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "sushy-emulator did not answer within 30 s on port {port}\n{}",
                e.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        e
    }

    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.port)
    }

    /// A GET with curl (not our client), certificate checks off: the emulator's own view.
    pub fn curl(&self, path: &str) -> Result<String, String> {
        let out = Command::new("curl")
            .args(["-sfk", "--max-time", "5", "-u"])
            .arg(format!("{USER}:{PASSWORD}"))
            .arg(format!("{}{path}", self.url()))
            .output()
            .map_err(|e| format!("cannot run curl ({e}); install Debian's curl"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!("curl exit {:?}", out.status.code()))
        }
    }

    pub fn logs(&self) -> String {
        let log = fs::read_to_string(self.dir.path().join("emulator.log")).unwrap_or_default();
        format!("--- sushy-emulator log (port {}) ---\n{log}", self.port)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// A fencer from a TOML section body (`[hosts.*]` tables included).
pub fn fencer(toml_text: &str) -> RedfishFencer {
    let cfg: RedfishConfig = toml::from_str(toml_text).unwrap();
    RedfishFencer::new(cfg).unwrap()
}

/// The section for one host `name` on `url` with `password` and `extra` lines in its table.
pub fn one_host(name: &str, url: &str, password: &str, extra: &str) -> String {
    format!(
        "timeout = \"5s\"\ntask_timeout = \"3s\"\n[hosts.{name}]\nurl = \"{url}\"\n\
         username = \"{USER}\"\npassword = \"{password}\"\n{extra}\n"
    )
}

/// A fencer for `compute-1` whose BMC URL has nothing listening (a free port on 127.0.0.1).
pub fn fencer_of_a_silent_bmc(password: &str) -> RedfishFencer {
    let url = format!("http://127.0.0.1:{}", free_port());
    fencer(&one_host("compute-1", &url, password, ""))
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}
