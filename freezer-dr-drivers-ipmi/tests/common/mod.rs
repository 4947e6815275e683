//! A real BMC for the tests: OpenIPMI's `ipmi_sim` on 127.0.0.1, one simulator per host, with a
//! chassis-control script whose state file the tests read; `ipmitool` as the reference client.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use freezer_dr_core::testing::ChildGuard;
use freezer_dr_drivers_ipmi::{Backend, BmcConfig, IpmiConfig, IpmiFencer};

pub const USER: &str = "admin";

/// How a simulated chassis behaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Chassis {
    /// Power follows the commands.
    #[default]
    Obedient,
    /// Accepts power-off but stays on (a broken BMC or a stuck relay).
    NeverOff,
}

pub struct Sim {
    // First: stopped before its directory is removed.
    child: ChildGuard,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub password: String,
}

/// Skips the test (returns `None`) only when `FREEZER_DR_SKIP_IPMI_SIM=1`; otherwise a missing
/// simulator fails the test.
pub fn skip() -> bool {
    let skip = std::env::var("FREEZER_DR_SKIP_IPMI_SIM").as_deref() == Ok("1");
    if skip {
        eprintln!("FREEZER_DR_SKIP_IPMI_SIM=1: skipping a test that needs ipmi_sim and ipmitool");
    }
    skip
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Sim {
    /// Starts a simulator whose chassis is on, with user `admin` and `password`.
    pub fn start(password: &str, chassis: Chassis) -> Sim {
        for tool in ["ipmi_sim", "ipmitool"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            assert!(
                found,
                "{tool} is not installed: `apt-get install openipmi ipmitool` (or set \
                 FREEZER_DR_SKIP_IPMI_SIM=1 to skip these tests)"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_udp_port();
        let script = dir.path().join("chassis.sh");
        let state = dir.path().join("power");
        std::fs::write(&state, "1").unwrap();
        // ipmi_sim calls `<script> 0x20 get power` (expects `power:<0|1>`) and
        // `<script> 0x20 set power <0|1>`.
        let set = match chassis {
            Chassis::Obedient => format!("printf '%s' \"$4\" > {}", state.display()),
            Chassis::NeverOff => format!("[ \"$4\" = 1 ] && printf 1 > {}; true", state.display()),
        };
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\ncase \"$2\" in\n  get) printf 'power:%s\\n' \"$(cat {state})\" ;;\n  \
                 set) [ \"$3\" = power ] && {set} ;;\nesac\n",
                state = state.display()
            ),
        )
        .unwrap();
        let mut perms = std::fs::metadata(&script).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&script, perms).unwrap();
        let auths = "none md2 md5 straight";
        std::fs::write(
            dir.path().join("lan.conf"),
            format!(
                "name \"sim\"\nset_working_mc 0x20\nstartlan 1\n  addr 127.0.0.1 {port}\n  \
                 priv_limit admin\n  allowed_auths_callback {auths}\n  allowed_auths_user {auths}\n  \
                 allowed_auths_operator {auths}\n  allowed_auths_admin {auths}\n  \
                 guid a123456789abcdefa123456789abcdef\nendlan\n\
                 chassis_control \"{} 0x20\"\n\
                 user 2 true \"{USER}\" \"{password}\" admin 10 {auths}\n",
                script.display()
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("sim.emu"),
            "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\n\
             sel_enable 0x20 1000 0x0a\nmc_enable 0x20\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("state")).unwrap();
        let log = std::fs::File::create(dir.path().join("sim.log")).unwrap();
        let child = Command::new("ipmi_sim")
            .arg("-c")
            .arg(dir.path().join("lan.conf"))
            .arg("-f")
            .arg(dir.path().join("sim.emu"))
            .arg("-s")
            .arg(dir.path().join("state"))
            .arg("-n")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start ipmi_sim");
        let sim = Sim {
            child: ChildGuard(child),
            dir,
            port,
            password: password.to_owned(),
        };
        let start = Instant::now();
        while sim.reference_status_result().is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "ipmi_sim did not answer ipmitool within 15 s on port {port}\n{}",
                sim.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        sim
    }

    /// The chassis power as the simulator's state file has it.
    pub fn power_is_on(&self) -> bool {
        std::fs::read_to_string(self.dir.path().join("power"))
            .unwrap()
            .trim()
            == "1"
    }

    pub fn set_power(&self, on: bool) {
        std::fs::write(self.dir.path().join("power"), if on { "1" } else { "0" }).unwrap();
    }

    fn reference_status_result(&self) -> Result<String, String> {
        let out = Command::new("ipmitool")
            .args(["-I", "lanplus", "-H", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-U", USER, "-E", "-C", "3", "-N", "1", "-R", "1"])
            .args(["chassis", "power", "status"])
            .env("IPMI_PASSWORD", &self.password)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// The power state read by the reference client (`ipmitool chassis power status`): "on" or "off".
    pub fn reference_status(&self) -> &'static str {
        match self.reference_status_result().as_deref() {
            Ok("Chassis Power is on") => "on",
            Ok("Chassis Power is off") => "off",
            other => panic!("ipmitool read {other:?}\n{}", self.logs()),
        }
    }

    pub fn logs(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("sim.log")).unwrap_or_default();
        format!("--- ipmi_sim log (port {}) ---\n{log}", self.port)
    }

    /// A BMC entry for this simulator.
    pub fn bmc(&self, password: &str, backend: Backend) -> BmcConfig {
        bmc_at(self.port, password, backend)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

pub fn bmc_at(port: u16, password: &str, backend: Backend) -> BmcConfig {
    let toml_text = format!(
        "address = \"127.0.0.1\"\nport = {port}\nusername = \"{USER}\"\npassword = \"{password}\"\n\
         backend = \"{backend}\"\n"
    );
    toml::from_str(&toml_text).unwrap()
}

/// A fencer with short timeouts (the tests' BMCs are local) over `hosts`.
pub fn fencer(hosts: Vec<(&str, BmcConfig)>, extra: &str) -> IpmiFencer {
    let mut cfg: IpmiConfig = toml::from_str(&format!(
        "timeout = \"3s\"\nretransmit_interval = \"500ms\"\nretransmits = 2\n{extra}\n[hosts]\n"
    ))
    .unwrap();
    for (name, bmc) in hosts {
        cfg.hosts.insert(name.to_owned(), bmc);
    }
    IpmiFencer::new(cfg).unwrap()
}

/// A UDP relay in front of a simulator that drops every ASF datagram (the presence ping): a BMC like
/// virtualbmc or pyghmi, which speak RMCP+ but never answer the ping ipmi-rs insists on.
pub struct AsfDropper {
    pub port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl AsfDropper {
    pub fn start(upstream: u16) -> AsfDropper {
        use std::collections::HashMap;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        front
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let port = front.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut backs: HashMap<std::net::SocketAddr, UdpSocket> = HashMap::new();
            let mut buf = [0u8; 2048];
            while !done.load(Ordering::Relaxed) {
                let Ok((n, client)) = front.recv_from(&mut buf) else {
                    continue;
                };
                // RMCP header byte 3: message class; 0x06 is ASF.
                if n >= 4 && buf[3] & 0x1F == 0x06 {
                    continue;
                }
                let back = backs.entry(client).or_insert_with(|| {
                    let back = UdpSocket::bind("127.0.0.1:0").unwrap();
                    back.connect(("127.0.0.1", upstream)).unwrap();
                    let reader = back.try_clone().unwrap();
                    let reply_to = front.try_clone().unwrap();
                    let done = Arc::clone(&done);
                    reader
                        .set_read_timeout(Some(Duration::from_millis(50)))
                        .unwrap();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 2048];
                        while !done.load(Ordering::Relaxed) {
                            if let Ok(n) = reader.recv(&mut buf) {
                                let _ = reply_to.send_to(&buf[..n], client);
                            }
                        }
                    });
                    back
                });
                let _ = back.send(&buf[..n]);
            }
        });
        AsfDropper { port, stop }
    }
}

impl Drop for AsfDropper {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
