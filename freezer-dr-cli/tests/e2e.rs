//! End to end: the real `freezer-dr` binary against the whole lab (`lab/up.sh`): Keystone + Nova with three
//! fake-driver computes, an `ipmi_sim` BMC per compute whose power-off really kills that compute's
//! `nova-compute`, and an SMTP server writing a Maildir. The same scenario as `lab/demo.sh`.
//!
//! One test function runs the whole story on one lab (it takes about a minute to start, and nextest runs
//! each test function in its own process):
//! 1. compute1 hangs: fenced (its process killed by the BMC), isolated, evacuated, users and operators
//!    told once; powered back on through its BMC, it returns to service — all with a `heartbeat_timeout`
//!    of 5 s (below Nova's `service_down_time`, shorter than three of the lab's 2 s heartbeats): detection
//!    is fast and the repaired host still returns to service (crash → all ACTIVE and power on → returned
//!    to service are printed);
//! 2. compute2 hangs and freezer-dr is SIGKILLed in the middle of the evacuations, then started again:
//!    the recovery completes, no instance is evacuated twice, no mail is sent twice;
//! 3. compute1 and compute3 fail at once with a storm budget of one host: nothing is fenced, the
//!    operators get one alert.
//!
//! A second test function starts a lab of its own for the one-actor story: two daemons without `[ha]`, each
//! with its own journal, watch the same cloud and one compute fails: one of them recovers it (one evacuation
//! per server, one set of mails), the other sees the first one's isolation marker, stops and alerts the
//! operators once.
//!
//! A third test function starts a lab of its own for the second opinion: Nova's monitor combined with the
//! `tcp` monitor probing what each host itself answers (a listener that dies with the host's power, not
//! with its `nova-compute`). With `combine = "all"`, a dead `nova-compute` alone fences nothing and the
//! operators are told once; a host powered off through its BMC is fenced and recovered. With
//! `combine = "any"`, a dead `nova-compute` alone is enough.
//!
//! Fails — never skips — when the lab cannot start, unless `FREEZER_DR_SKIP_LAB=1` is set explicitly.

// Test harness code: panicking is how it fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use freezer_dr_nova::lab::{self, Admin};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_freezer-dr");
const OPERATORS: [&str; 2] = ["ops@cloud.lab", "oncall@cloud.lab"];

/// The running lab (started by `lab/up.sh`) and the freezer-dr daemons on it; the daemons are killed when
/// it is dropped, then the lab is stopped (its logs shown first on failure).
struct Lab {
    lab: lab::Lab,
    daemon: Option<Child>,
    /// A second daemon with its own config and journal (no `[ha]`): the one-actor story.
    second: Option<Child>,
}

impl std::ops::Deref for Lab {
    type Target = lab::Lab;
    fn deref(&self) -> &lab::Lab {
        &self.lab
    }
}

impl Lab {
    fn start() -> Option<Lab> {
        let mut lab = lab::Lab::start(&lab::LabSpec {
            name: "the lab",
            up: "lab/up.sh",
            down: "lab/down.sh",
            install: "lab/install.sh",
            args: Vec::new(),
            skip_var: "FREEZER_DR_SKIP_LAB",
            prefix: "fdr-e2e.",
        })?;
        let mut logs = vec![
            "freezer-dr.log".to_owned(),
            "freezer-dr-b.log".into(),
            "nova-api.log".into(),
            "nova-conductor.log".into(),
        ];
        for h in ["compute1", "compute2", "compute3"] {
            logs.push(format!("nova-compute-{h}.log"));
            logs.push(format!("bmc-{h}.log"));
        }
        for name in logs {
            lab.show_on_failure(format!("logs/{name}"), 40);
        }
        for h in ["compute1", "compute2", "compute3"] {
            lab.show_on_failure(format!("bmc/{h}/chassis.log"), usize::MAX);
        }
        Some(Lab {
            lab,
            daemon: None,
            second: None,
        })
    }

    fn config(&self) -> PathBuf {
        self.path("freezer-dr.toml")
    }

    /// The second daemon's config: the lab's, with a journal of its own.
    fn second_config(&self) -> PathBuf {
        self.path("freezer-dr-b.toml")
    }

    /// `freezer-dr ARGS` on the lab's config.
    fn cli(&self, args: &[&str]) -> Output {
        self.cli_on(&self.config(), args)
    }

    fn cli_on(&self, config: &Path, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("FREEZER_DR_CONFIG", config)
            .output()
            .expect("run freezer-dr")
    }

    /// `freezer-dr run` on `config`, logging to `logs/LOG`.
    fn spawn_daemon(&self, config: &Path, log: &str) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(&format!("logs/{log}")))
            .unwrap();
        Command::new(BIN)
            .arg("run")
            .env("FREEZER_DR_CONFIG", config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start freezer-dr run")
    }

    fn start_daemon(&mut self) {
        assert!(self.daemon.is_none(), "a daemon already runs");
        self.daemon = Some(self.spawn_daemon(&self.config(), "freezer-dr.log"));
    }

    /// SIGKILL: no drain, no goodbye.
    fn kill_daemon(&mut self) {
        let mut c = self.daemon.take().expect("no daemon");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    fn daemon_alive(&mut self) -> bool {
        self.daemon
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    fn compute_pid(&self, host: &str) -> u32 {
        let text =
            std::fs::read_to_string(self.path(&format!("pids/nova-compute-{host}"))).unwrap();
        text.split_whitespace().next().unwrap().parse().unwrap()
    }

    fn signal(&self, pid: u32, sig: &str) {
        let ok = Command::new("kill")
            .args([format!("-{sig}"), pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} {pid}");
    }

    /// The host hangs: its nova-compute stops reporting but the process exists until fenced.
    fn hang(&self, host: &str) -> u32 {
        let pid = self.compute_pid(host);
        self.signal(pid, "STOP");
        pid
    }

    /// `ipmitool ... chassis ARGS` against the host's BMC, as an operator would.
    fn bmc(&self, host: &str, args: &[&str]) -> String {
        let port = std::fs::read_to_string(self.path(&format!("bmc/{host}/port"))).unwrap();
        let out = Command::new("ipmitool")
            .args(["-I", "lanplus", "-H", "127.0.0.1", "-p", port.trim()])
            .args(["-U", "admin", "-E", "-C", "3", "chassis"])
            .args(args)
            .env(
                "IPMI_PASSWORD",
                std::fs::read_to_string(self.path("bmc.pass")).unwrap(),
            )
            .output()
            .unwrap();
        assert!(out.status.success(), "ipmitool {args:?} on {host}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn power_file(&self, host: &str) -> String {
        std::fs::read_to_string(self.path(&format!("bmc/{host}/power"))).unwrap()
    }

    /// Boots servers on exact hosts (`PROJECT:HOST:COUNT` each) and waits until they are ACTIVE.
    fn boot(&self, servers: &[&str]) {
        let args: Vec<&str> = std::iter::once("boot")
            .chain(servers.iter().copied())
            .collect();
        self.lab_py(&args);
    }

    fn lab_py(&self, args: &[&str]) -> String {
        let out = Command::new(format!("{}/bin/python", self.var("LAB_VENV")))
            .arg(lab::repo().join("lab/lab.py"))
            .args(args)
            .envs(self.env())
            .output()
            .unwrap();
        assert!(out.status.success(), "lab.py {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn history(&self) -> Vec<Value> {
        let out = self.cli(&["history", "--json", "--limit", "100000"]);
        assert!(out.status.success(), "history: {out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn status(&self) -> Value {
        let out = self.cli(&["status", "--json"]);
        assert!(out.status.success(), "status: {out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Every mail the SMTP server kept.
    fn mails(&self) -> Vec<Mail> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(self.path("maildir/new")) else {
            return out;
        };
        for e in rd.flatten() {
            let raw = std::fs::read(e.path()).unwrap();
            let msg = mail_parser::MessageParser::default()
                .parse(&raw)
                .unwrap_or_else(|| panic!("{} is not a mail", e.path().display()));
            let header = |n: &str| msg.header_raw(n).map(|v| v.trim().to_owned());
            out.push(Mail {
                rcpt: header("X-RcptTo").unwrap_or_default().to_ascii_lowercase(),
                message_id: header("Message-ID").unwrap_or_default(),
                subject: msg.subject().unwrap_or_default().to_owned(),
                text: msg.body_text(0).map(|t| t.into_owned()).unwrap_or_default(),
            });
        }
        out
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for mut c in [self.daemon.take(), self.second.take()]
            .into_iter()
            .flatten()
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[derive(Clone, Debug)]
struct Mail {
    rcpt: String,
    message_id: String,
    subject: String,
    text: String,
}

/// A server booted by `lab.py boot`.
#[derive(Clone, Debug)]
struct Server {
    id: String,
    name: String,
    project: String,
    project_id: String,
}

fn servers(lab: &Lab) -> Vec<Server> {
    let text = std::fs::read_to_string(lab.path("servers.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| Server {
            id: s["id"].as_str().unwrap().to_owned(),
            name: s["name"].as_str().unwrap().to_owned(),
            project: s["project_name"].as_str().unwrap().to_owned(),
            project_id: s["project_id"].as_str().unwrap().to_owned(),
        })
        .collect()
}

/// The servers that `placement` put on `host`.
fn servers_on<'a>(
    all: &'a [Server],
    placement: &BTreeMap<String, (String, usize)>,
    host: &str,
) -> Vec<&'a Server> {
    all.iter().filter(|s| placement[&s.id].0 == host).collect()
}

/// Where each server runs now, and how many evacuations Nova recorded for it.
async fn placement(admin: &Admin, all: &[Server]) -> BTreeMap<String, (String, usize)> {
    let mut out = BTreeMap::new();
    for s in all {
        let v = admin.server(&s.id).await;
        let host = v["OS-EXT-SRV-ATTR:host"].as_str().unwrap().to_owned();
        out.insert(s.id.clone(), (host, admin.evacuations(&s.id).await));
    }
    out
}

async fn wait_for<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn history_has(lab: &Lab, host: Option<&str>, text: &str, since: u64) -> bool {
    lab.history().iter().any(|e| {
        e["at"].as_u64().unwrap() >= since
            && host.is_none_or(|h| e["host"] == h)
            && e["what"].as_str().unwrap().contains(text)
    })
}

/// Waits until `host` is in service again in Nova (enabled, not forced down, up) and freezer-dr's history
/// says it returned it to service after `since`.
async fn wait_back_in_service(lab: &Lab, admin: &Admin, host: &str, since: u64) {
    wait_for(
        &format!("{host} back in service (in Nova and in the journal)"),
        Duration::from_secs(120),
        || async {
            let s = admin.service(host).await;
            s["status"] == "enabled"
                && s["forced_down"] == false
                && s["state"] == "up"
                && history_has(lab, Some(host), "returned to service", since)
        },
    )
    .await;
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Asserts the failed host's recovery: every one of its servers ACTIVE elsewhere and evacuated exactly
/// once more than `before`; every other server untouched.
async fn assert_evacuated(
    admin: &Admin,
    all: &[Server],
    before: &BTreeMap<String, (String, usize)>,
    failed: &str,
) {
    let after = placement(admin, all).await;
    for s in all {
        let (was_on, n_before) = &before[&s.id];
        let (now_on, n_after) = &after[&s.id];
        let v = admin.server(&s.id).await;
        assert_eq!(v["status"], "ACTIVE", "{}: {v}", s.name);
        if was_on == failed {
            assert_ne!(now_on, failed, "{} still on {failed}", s.name);
            assert_eq!(
                *n_after,
                n_before + 1,
                "{} ({}) must be evacuated exactly once",
                s.name,
                s.id
            );
        } else {
            assert_eq!(
                now_on, was_on,
                "{} moved although {was_on} did not fail",
                s.name
            );
            assert_eq!(n_after, n_before, "{} was evacuated", s.name);
            assert!(v["OS-EXT-STS:task_state"].is_null(), "{}: {v}", s.name);
        }
    }
}

/// Users' mails of one recovery: each user of each affected project exactly one mail naming exactly the
/// project's servers on `failed`, nobody else; the operators exactly one digest.
fn assert_mails(
    mails: &[Mail],
    failed: &str,
    on_failed: &[&Server],
    all: &[Server],
    users: &BTreeMap<&str, Vec<&str>>,
) {
    let about: Vec<&Mail> = mails
        .iter()
        .filter(|m| {
            m.subject.contains(&format!("host {failed}"))
                || m.subject.contains(&format!("{failed}:"))
        })
        .collect();
    let projects: BTreeSet<&str> = on_failed.iter().map(|s| s.project.as_str()).collect();
    for (project, addrs) in users {
        for addr in addrs {
            let got: Vec<&&Mail> = about.iter().filter(|m| m.rcpt == *addr).collect();
            if !projects.contains(project) {
                assert!(
                    got.is_empty(),
                    "{addr} ({project}) was not affected: {got:#?}"
                );
                continue;
            }
            assert_eq!(
                got.len(),
                1,
                "{addr} gets exactly one mail about {failed}: {got:#?}"
            );
            let text = &got[0].text;
            let project_id = &on_failed
                .iter()
                .find(|s| s.project == *project)
                .unwrap()
                .project_id;
            // Named as Keystone names the project; its id is in the text for the operators.
            assert!(
                got[0].subject.contains(&format!("Project {project}: ")),
                "{addr}: {}",
                got[0].subject
            );
            assert!(
                text.contains(&format!("project {project} ({project_id})")),
                "{addr}'s mail names its project and its id:\n{text}"
            );
            for s in all {
                let mine = s.project == *project && on_failed.iter().any(|f| f.id == s.id);
                assert_eq!(
                    text.contains(&s.id),
                    mine,
                    "{addr}'s mail about {failed} and server {} ({}, project {}):\n{text}",
                    s.name,
                    s.id,
                    s.project
                );
            }
        }
    }
    for op in OPERATORS {
        let digests: Vec<&&Mail> = about
            .iter()
            .filter(|m| m.rcpt == op && m.subject.contains("recovery finished"))
            .collect();
        assert_eq!(
            digests.len(),
            1,
            "{op}: one digest about {failed}: {about:#?}"
        );
        for s in on_failed {
            assert!(
                digests[0].text.contains(&s.id),
                "{op}'s digest lacks {}",
                s.id
            );
        }
    }
}

/// Keystone's lab users with an email, by project (lab/openstack/lab.py): carol has none; bob is a
/// member through a group.
fn lab_users() -> BTreeMap<&'static str, Vec<&'static str>> {
    BTreeMap::from([
        ("demo", vec!["alice@example.org", "bob@example.org"]),
        ("other", vec!["dave@example.org"]),
    ])
}

/// How many operators' digests of `host`'s recovery were received.
fn digests(mails: &[Mail], host: &str) -> usize {
    let subject = format!("recovery finished: {host}");
    mails
        .iter()
        .filter(|m| m.subject.contains(&subject))
        .count()
}

/// `host`'s entry in `status --json`.
fn status_of(status: &Value, host: &str) -> Value {
    status["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == host)
        .cloned()
        .unwrap_or_else(|| panic!("{host} not in the status: {status:#}"))
}

/// Waits (at most `secs`) until every operator got `host`'s recovery digest: `what` finished.
async fn wait_digests(lab: &Lab, host: &str, what: &str, secs: u64) {
    wait_for(what, Duration::from_secs(secs), || async {
        digests(&lab.mails(), host) >= OPERATORS.len()
    })
    .await;
}

/// Whether `status --json` shows every report delivered. A test that SIGKILLs the daemon waits for this
/// first: a kill in the middle of an SMTP transaction resends that mail at the next start (the same
/// Message-ID: nothing is lost, by design), and `assert_no_mail_twice` would then fail on the kill's
/// timing, not on the code.
fn outbox_empty(status: &Value) -> bool {
    status["outbox"]
        .as_array()
        .unwrap_or_else(|| panic!("no outbox in the status: {status:#}"))
        .is_empty()
}

fn assert_no_mail_twice(mails: &[Mail]) {
    let mut seen = BTreeSet::new();
    for m in mails {
        assert!(
            seen.insert((m.message_id.clone(), m.rcpt.clone())),
            "{} received {} twice ({})",
            m.rcpt,
            m.message_id,
            m.subject
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lab_recovers_a_failed_compute_resumes_after_a_kill_and_refuses_a_storm() {
    let Some(mut lab) = Lab::start() else { return };
    let admin = Admin::new(&lab).await;
    let v = lab.cli(&["validate", "--connect"]);
    assert!(v.status.success(), "validate --connect: {v:?}");

    lab.boot(&[
        "demo:compute1:2",
        "other:compute1:1",
        "demo:compute2:1",
        "other:compute2:1",
        "demo:compute3:1",
        "other:compute3:1",
    ]);
    let users = lab_users();

    // ---- 1. compute1 hangs, watched with a short heartbeat_timeout (the lab's report_interval is 2 s).
    let cfg = std::fs::read_to_string(lab.config()).unwrap();
    assert!(cfg.contains("heartbeat_timeout = \"10s\""), "{cfg}");
    std::fs::write(
        lab.config(),
        cfg.replace("heartbeat_timeout = \"10s\"", "heartbeat_timeout = \"5s\""),
    )
    .unwrap();
    let all = servers(&lab);
    let before = placement(&admin, &all).await;
    lab.start_daemon();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(lab.daemon_alive(), "freezer-dr run exited at once");
    let crashed = Instant::now();
    let pid = lab.hang("compute1");
    assert!(process_exists(pid));
    let on1 = servers_on(&all, &before, "compute1");
    assert_eq!(on1.len(), 3);
    wait_for(
        "compute1's instances ACTIVE elsewhere",
        Duration::from_secs(150),
        || async {
            for srv in &on1 {
                let s = admin.server(&srv.id).await;
                if s["status"] != "ACTIVE" || s["OS-EXT-SRV-ATTR:host"] == "compute1" {
                    return false;
                }
            }
            true
        },
    )
    .await;
    eprintln!(
        "heartbeat_timeout 5s: crash of compute1 → all its instances ACTIVE elsewhere in {:.1?}",
        crashed.elapsed()
    );
    wait_digests(&lab, "compute1", "compute1's recovery and its digest", 150).await;
    eprintln!(
        "compute1 recovered and reported {:.1?} after it hung",
        crashed.elapsed()
    );

    // The fence was real: the BMC killed the hung process and reads off.
    assert!(
        !process_exists(pid),
        "nova-compute (pid {pid}) of compute1 survived its fence"
    );
    assert_eq!(lab.power_file("compute1"), "0");
    assert_eq!(
        lab.bmc("compute1", &["power", "status"]),
        "Chassis Power is off"
    );
    let chassis = std::fs::read_to_string(lab.path("bmc/compute1/chassis.log")).unwrap();
    assert!(
        chassis.contains(&format!("nova-compute (pid {pid}) killed")),
        "{chassis}"
    );
    for h in ["compute2", "compute3"] {
        assert_eq!(lab.power_file(h), "1", "{h} was powered off");
    }
    // Isolated with freezer-dr's marker.
    let svc = admin.service("compute1").await;
    assert_eq!(svc["forced_down"], true, "{svc}");
    assert_eq!(svc["status"], "disabled", "{svc}");
    // freezer-dr:fenced:<journal id>:compute1@<run>:<time>: this daemon's journal names itself.
    let reason = svc["disabled_reason"].as_str().unwrap();
    assert!(
        freezer_dr_core::marker_journal(reason).is_some() && reason.contains(":compute1@"),
        "{svc}"
    );
    for h in ["compute2", "compute3"] {
        let s = admin.service(h).await;
        assert_eq!(
            (s["status"].as_str(), s["forced_down"].as_bool()),
            (Some("enabled"), Some(false)),
            "{s}"
        );
    }
    assert_evacuated(&admin, &all, &before, "compute1").await;
    let mails = lab.mails();
    assert_mails(&mails, "compute1", &on1, &all, &users);
    assert_no_mail_twice(&mails);
    assert!(
        mails.iter().all(|m| m.rcpt != "carol@example.org"),
        "carol has no email address"
    );
    // Only the digest so far: no alert went to the operators.
    for op in OPERATORS {
        let n = mails.iter().filter(|m| m.rcpt == op).count();
        assert_eq!(n, 1, "{op}: {mails:#?}");
    }

    // Repaired: power on through the BMC starts nova-compute; freezer-dr returns it to service.
    let powered_on = now_ms();
    assert!(lab.bmc("compute1", &["power", "on"]).contains("Up/On"));
    wait_back_in_service(&lab, &admin, "compute1", powered_on).await;
    eprintln!(
        "heartbeat_timeout 5s: power on of compute1 → returned to service in {:.1?}",
        Duration::from_millis(now_ms().saturating_sub(powered_on))
    );
    assert_ne!(
        lab.compute_pid("compute1"),
        pid,
        "a new nova-compute runs on compute1"
    );

    // ---- 2. compute2 hangs (with more servers on it); freezer-dr is killed mid-evacuation.
    lab.lab_py(&["boot", "demo:compute2:2", "other:compute2:2"]);
    let all = servers(&lab);
    let before = placement(&admin, &all).await;
    let on2 = servers_on(&all, &before, "compute2");
    assert!(on2.len() >= 6, "{on2:?}");
    let mails_before = lab.mails().len();
    let pid2 = lab.hang("compute2");
    wait_for(
        "compute2's evacuations to be under way",
        Duration::from_secs(120),
        || {
            let st = lab.status();
            let started = || {
                let host = st["hosts"]
                    .as_array()?
                    .iter()
                    .find(|h| h["host"] == "compute2")?;
                let states: Vec<&str> = host["instances"]
                    .as_array()?
                    .iter()
                    .filter_map(|i| i["state"]["state"].as_str())
                    .collect();
                let moving = states.iter().filter(|s| **s != "pending").count();
                let pending = states.iter().filter(|s| **s == "pending").count();
                Some(moving >= 1 && pending >= 1)
            };
            // The fencing notice delivered first: see `outbox_empty`.
            let go = started().unwrap_or(false) && outbox_empty(&st);
            async move { go }
        },
    )
    .await;
    lab.kill_daemon();
    let st = lab.status();
    eprintln!("freezer-dr killed (SIGKILL) mid-evacuation; status then: {st:#}");
    lab.start_daemon();
    wait_digests(
        &lab,
        "compute2",
        "compute2's recovery after the restart",
        150,
    )
    .await;
    assert!(
        !process_exists(pid2),
        "nova-compute of compute2 survived its fence"
    );
    assert_evacuated(&admin, &all, &before, "compute2").await;
    let mails = lab.mails();
    assert!(mails.len() > mails_before);
    assert_mails(&mails, "compute2", &on2, &all, &users);
    assert_no_mail_twice(&mails);
    let log = std::fs::read_to_string(lab.path("logs/freezer-dr.log")).unwrap();
    assert!(
        log.contains("resuming recoveries from the journal"),
        "the restarted daemon did not resume"
    );
    let powered_on = now_ms();
    lab.bmc("compute2", &["power", "on"]);
    wait_back_in_service(&lab, &admin, "compute2", powered_on).await;

    // ---- 3. Storm: compute1 and compute3 fail at once; the budget is one host.
    let storm_at = now_ms();
    let before = placement(&admin, &all).await;
    let alerts_before: usize = lab
        .mails()
        .iter()
        .filter(|m| m.subject.to_lowercase().contains("storm"))
        .count();
    assert_eq!(alerts_before, 0);
    lab.compute("kill", "compute1");
    lab.compute("kill", "compute3");
    wait_for("the storm guard", Duration::from_secs(90), || async {
        history_has(&lab, None, "storm:", storm_at)
    })
    .await;
    // A few more cycles: still nothing fenced.
    tokio::time::sleep(Duration::from_secs(10)).await;
    for h in ["compute1", "compute3"] {
        assert_eq!(lab.power_file(h), "1", "{h} was fenced during a storm");
        assert!(
            !history_has(&lab, Some(h), "recovery started", storm_at),
            "{h}"
        );
        let s = admin.service(h).await;
        assert_eq!(s["forced_down"], false, "{s}");
        assert_eq!(s["status"], "enabled", "{s}");
    }
    assert_eq!(
        placement(&admin, &all).await,
        before,
        "nothing may move in a storm"
    );
    let mails = lab.mails();
    for op in OPERATORS {
        let storm: Vec<&Mail> = mails
            .iter()
            .filter(|m| m.rcpt == op && m.subject.to_lowercase().contains("storm"))
            .collect();
        assert_eq!(storm.len(), 1, "{op} gets one storm alert: {storm:#?}");
        assert!(storm[0].text.contains("compute1") && storm[0].text.contains("compute3"));
    }
    let users_told: Vec<&Mail> = mails
        .iter()
        .filter(|m| {
            !OPERATORS.contains(&m.rcpt.as_str()) && m.subject.to_lowercase().contains("storm")
        })
        .collect();
    assert!(
        users_told.is_empty(),
        "users are not told about a storm: {users_told:#?}"
    );
    assert_no_mail_twice(&mails);
    assert!(
        lab.daemon_alive(),
        "the daemon keeps running through a storm"
    );
}

/// Two daemons without `[ha]` (an operator's easy mistake): each has its own journal and so its own id in
/// the isolation marker. One compute fails: exactly one evacuation per server and one set of mails; the
/// daemon that comes second reads the first one's marker before it writes its own, evacuates nothing and
/// alerts the operators once.
///
/// The second daemon starts a second after the first, so their observations are about a second apart (the
/// lab observes every 2 s): this proves the read before the write. Two reads within the same few
/// milliseconds, before either daemon wrote, are the residual race Nova's API cannot close (no
/// compare-and-set on a service); the engine's listing test covers the re-read that narrows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_without_ha_recover_a_failed_compute_once() {
    let Some(mut lab) = Lab::start() else { return };
    let admin = Admin::new(&lab).await;
    lab.boot(&["demo:compute2:2", "other:compute2:1", "demo:compute1:1"]);
    let users = lab_users();
    let cfg = std::fs::read_to_string(lab.config()).unwrap();
    let journal_a = lab.path("freezer-dr/journal.redb");
    let journal_b = lab.path("freezer-dr-b/journal.redb");
    assert!(cfg.contains(&journal_a.display().to_string()), "{cfg}");
    std::fs::create_dir_all(journal_b.parent().unwrap()).unwrap();
    std::fs::write(
        lab.second_config(),
        cfg.replace(
            &journal_a.display().to_string(),
            &journal_b.display().to_string(),
        ),
    )
    .unwrap();
    // Both configs are valid and both say that exactly one daemon may use this cloud.
    for config in [lab.config(), lab.second_config()] {
        let v = lab.cli_on(&config, &["validate"]);
        assert!(v.status.success(), "validate {}: {v:?}", config.display());
        let said =
            String::from_utf8_lossy(&v.stdout).into_owned() + &String::from_utf8_lossy(&v.stderr);
        assert!(
            said.to_lowercase().contains("exactly one freezer-dr"),
            "validate without [ha]: {said}"
        );
    }

    let all = servers(&lab);
    let before = placement(&admin, &all).await;
    let on2 = servers_on(&all, &before, "compute2");
    assert_eq!(on2.len(), 3, "{before:?}");
    lab.start_daemon();
    tokio::time::sleep(Duration::from_secs(1)).await;
    lab.second = Some(lab.spawn_daemon(&lab.second_config(), "freezer-dr-b.log"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        lab.daemon_alive(),
        "the first freezer-dr run exited at once"
    );
    assert!(
        lab.second
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none()),
        "the second freezer-dr run exited at once"
    );
    let journal_ids: Vec<String> = [lab.config(), lab.second_config()]
        .iter()
        .map(|c| {
            let out = lab.cli_on(c, &["status", "--json"]);
            assert!(out.status.success(), "status: {out:?}");
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            v["journal_id"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    assert!(
        !journal_ids[0].is_empty() && journal_ids[0] != journal_ids[1],
        "two journals, two ids: {journal_ids:?}"
    );

    let crashed = Instant::now();
    let pid = lab.hang("compute2");
    let alerted = |mails: &[Mail]| -> Vec<Mail> {
        mails
            .iter()
            .filter(|m| {
                m.subject.contains("ALERT") && m.text.contains("another freezer-dr (journal")
            })
            .cloned()
            .collect()
    };
    wait_for(
        "compute2 recovered by one daemon and the other daemon's alert",
        Duration::from_secs(180),
        || async {
            let mails = lab.mails();
            digests(&mails, "compute2") >= OPERATORS.len()
                && alerted(&mails).len() >= OPERATORS.len()
        },
    )
    .await;
    eprintln!(
        "two daemons: compute2 recovered once and the other actor reported {:.1?} after it hung",
        crashed.elapsed()
    );
    // A few more observations: nothing more happens, nobody is told twice.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        !process_exists(pid),
        "nova-compute of compute2 survived its fence"
    );
    assert_evacuated(&admin, &all, &before, "compute2").await;
    let mails = lab.mails();
    assert_mails(&mails, "compute2", &on2, &all, &users);
    assert_no_mail_twice(&mails);
    let alerts = alerted(&mails);
    for op in OPERATORS {
        let mine: Vec<&Mail> = alerts.iter().filter(|m| m.rcpt == op).collect();
        assert_eq!(
            mine.len(),
            1,
            "{op} gets one alert about the other actor: {mine:#?}"
        );
        assert!(mine[0].subject.contains("compute2"), "{}", mine[0].subject);
    }
    for m in &mails {
        if !OPERATORS.contains(&m.rcpt.as_str()) {
            assert!(
                !alerts.iter().any(|a| a.message_id == m.message_id),
                "users get no alert: {m:?}"
            );
        }
    }
    // Every operator mail is the digest or that alert: no second recovery, no other alert.
    for op in OPERATORS {
        let n = mails.iter().filter(|m| m.rcpt == op).count();
        assert_eq!(n, 2, "{op}: {mails:#?}");
    }

    // One journal recovered compute2; the other stopped at isolation, naming the first one's journal.
    let mut stages = Vec::new();
    for (config, own) in [lab.config(), lab.second_config()].iter().zip(&journal_ids) {
        let out = lab.cli_on(config, &["status", "--json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let host = status_of(&v, "compute2");
        stages.push((own.clone(), host));
    }
    let (winners, losers): (Vec<_>, Vec<_>) = stages
        .iter()
        .partition(|(_, h)| h["stage"]["stage"] != "needs_operator");
    assert_eq!((winners.len(), losers.len()), (1, 1), "{stages:#?}");
    let (winner, _) = winners[0];
    let (loser, host) = losers[0];
    let why = host["stage"]["why"].as_str().unwrap_or_default();
    assert!(
        why.contains(&format!("another freezer-dr (journal {winner})")),
        "{loser} names {winner}: {host:#}"
    );
    assert!(
        host["instances"].as_array().is_none_or(|i| i.is_empty()),
        "the second daemon evacuated nothing: {host:#}"
    );
    let svc = admin.service("compute2").await;
    let reason = svc["disabled_reason"].as_str().unwrap();
    assert_eq!(
        freezer_dr_core::marker_journal(reason),
        Some(winner.as_str()),
        "the marker is the winner's: {svc}"
    );
    eprintln!("journal {winner} recovered compute2; journal {loser} stopped: {why}");
}

/// The lab's config with a second monitor, `tcp`, probing each compute's own listener, combined as
/// `combine` says.
fn combined_config(lab: &Lab, lab_config: &str, combine: &str) -> String {
    assert!(lab_config.contains("\n[monitor]\n"), "{lab_config}");
    let mut cfg = lab_config.replace("\n[monitor]\n", "\n[[monitor]]\n");
    cfg.push_str(&format!(
        "\n[recovery.monitors]\ncombine = \"{combine}\"\n# Past Nova's 10 s heartbeat timeout: a host the probe sees dead first is no disagreement.\n\
         disagreement_after = \"20s\"\n\n[[monitor]]\ntype = \"tcp\"\ntimeout = \"1s\"\n"
    ));
    for h in ["compute1", "compute2", "compute3"] {
        let port = std::fs::read_to_string(lab.path(&format!("bmc/{h}/host-port"))).unwrap();
        cfg.push_str(&format!(
            "[monitor.hosts.{h}]\naddresses = [\"127.0.0.1:{}\"]\n",
            port.trim()
        ));
    }
    cfg
}

/// The operators' mails saying the monitors disagree about `host`.
fn disagreements(mails: &[Mail], host: &str) -> Vec<Mail> {
    mails
        .iter()
        .filter(|m| m.subject.contains("monitors_disagree") && m.subject.contains(host))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_monitor_tells_a_dead_nova_compute_from_a_dead_host() {
    let Some(mut lab) = Lab::start() else { return };
    let admin = Admin::new(&lab).await;
    lab.boot(&["demo:compute1:1", "demo:compute2:1", "other:compute3:1"]);
    let lab_config = std::fs::read_to_string(lab.config()).unwrap();
    std::fs::write(lab.config(), combined_config(&lab, &lab_config, "all")).unwrap();
    let v = lab.cli(&["validate", "--connect"]);
    assert!(v.status.success(), "validate --connect: {v:?}");
    let all = servers(&lab);
    let before = placement(&admin, &all).await;
    lab.start_daemon();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(lab.daemon_alive(), "freezer-dr run exited at once");

    // ---- 1. all: only compute1's nova-compute dies; the host itself still answers.
    let since = now_ms();
    let crashed = Instant::now();
    lab.compute("kill", "compute1");
    wait_for(
        "the operators told that nova and tcp disagree about compute1",
        Duration::from_secs(90),
        || async { disagreements(&lab.mails(), "compute1").len() >= OPERATORS.len() },
    )
    .await;
    eprintln!(
        "all: nova-compute of compute1 killed; operators told 'not fenced' {:.1?} later",
        crashed.elapsed()
    );
    // Several more observations: still not fenced, told once.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(lab.power_file("compute1"), "1", "compute1 was powered off");
    assert!(
        history_has(
            &lab,
            Some("compute1"),
            "nova down but tcp says it is up: not fenced",
            since
        ),
        "{:#?}",
        lab.history()
    );
    let told = disagreements(&lab.mails(), "compute1");
    for op in OPERATORS {
        assert_eq!(
            told.iter().filter(|m| m.rcpt == op).count(),
            1,
            "{op}: {told:#?}"
        );
    }
    assert!(
        told[0].text.contains("nova: down") && told[0].text.contains("tcp: up"),
        "{}",
        told[0].text
    );
    let st = lab.status();
    let c1 = status_of(&st, "compute1");
    assert_eq!(c1["stage"]["stage"], "healthy", "{c1:#}");
    assert_eq!(c1["views"][1]["monitor"], "tcp", "{c1:#}");
    assert_eq!(placement(&admin, &all).await, before, "nothing moved");
    lab.compute("start", "compute1");

    // ---- 2. all: compute2 loses its power (its BMC, as a pulled plug): both monitors see it down.
    let crashed = Instant::now();
    lab.bmc("compute2", &["power", "off"]);
    wait_digests(&lab, "compute2", "compute2 recovered", 180).await;
    eprintln!(
        "all: compute2 powered off; recovered {:.1?} later",
        crashed.elapsed()
    );
    assert_evacuated(&admin, &all, &before, "compute2").await;
    assert!(disagreements(&lab.mails(), "compute2").is_empty());
    let since = now_ms();
    lab.bmc("compute2", &["power", "on"]);
    wait_back_in_service(&lab, &admin, "compute2", since).await;

    // ---- 3. any: a dead nova-compute alone is enough to fence compute3.
    wait_for(
        "compute2's return to service told to the operators",
        Duration::from_secs(60),
        || {
            let empty = outbox_empty(&lab.status());
            async move { empty }
        },
    )
    .await;
    lab.kill_daemon();
    std::fs::write(lab.config(), combined_config(&lab, &lab_config, "any")).unwrap();
    let before = placement(&admin, &all).await;
    lab.start_daemon();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let crashed = Instant::now();
    lab.compute("kill", "compute3");
    wait_digests(
        &lab,
        "compute3",
        "compute3 recovered with combine = any",
        180,
    )
    .await;
    eprintln!(
        "any: nova-compute of compute3 killed; recovered {:.1?} later",
        crashed.elapsed()
    );
    assert_eq!(lab.power_file("compute3"), "0", "compute3 was fenced");
    assert_evacuated(&admin, &all, &before, "compute3").await;
    assert_no_mail_twice(&lab.mails());
}
