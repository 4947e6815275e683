//! The ipmitool backend: one `ipmitool` process per command, the password in its environment (`-E`,
//! `IPMI_PASSWORD`), never on its command line; output parsed strictly; a deadline on every call.

use std::path::Path;
use std::process::Stdio;

use freezer_dr_core::{ErrorKind, PowerState};
use tokio::process::Command;
use tokio::time::Instant;

use crate::call::{CallError, Op, Reply, Timing, scrub};
use crate::config::Bmc;

/// Runs `op` on `bmc` through ipmitool: reads the power status, then sends the control command only
/// if the chassis is not already in the wanted state.
pub(crate) async fn call(
    exe: &Path,
    bmc: &Bmc,
    op: Op,
    timing: &Timing,
) -> Result<Reply, CallError> {
    let deadline = Instant::now() + timing.timeout;
    let out = run(exe, bmc, timing, &["chassis", "power", "status"], deadline).await?;
    let state = parse_status(&out)?;
    let (wanted, verb, answer) = match op {
        Op::Status => return Ok(Reply::State(state)),
        Op::Off => (PowerState::Off, "off", "Chassis Power Control: Down/Off"),
        Op::On => (PowerState::On, "on", "Chassis Power Control: Up/On"),
    };
    if state == wanted {
        return Ok(Reply::Already);
    }
    let out = run(exe, bmc, timing, &["chassis", "power", verb], deadline).await?;
    match meaningful(&out).as_slice() {
        [line] if *line == answer => Ok(Reply::Sent),
        _ => Err(unexpected(&out, answer)),
    }
}

/// The arguments before the command: everything but the password.
pub(crate) fn arguments(bmc: &Bmc, timing: &Timing) -> Vec<String> {
    let interface = if bmc.lanplus { "lanplus" } else { "lan" };
    let mut args = vec![
        "-I".to_owned(),
        interface.to_owned(),
        "-H".to_owned(),
        bmc.address.clone(),
        "-p".to_owned(),
        bmc.port.to_string(),
        "-U".to_owned(),
        bmc.username.clone(),
        "-E".to_owned(),
        "-L".to_owned(),
        bmc.privilege.ipmitool_name().to_owned(),
    ];
    if bmc.lanplus {
        // Always explicit: without -C, ipmitool first asks the BMC for its cipher suites (seconds).
        args.extend(["-C".to_owned(), bmc.cipher.to_string()]);
    }
    // ipmitool retransmits lost datagrams itself: -N seconds between sends, -R sends.
    let interval = timing.retransmit_interval.as_secs_f64().ceil().max(1.0) as u64;
    args.extend([
        "-N".to_owned(),
        interval.to_string(),
        "-R".to_owned(),
        timing.retransmits.max(1).to_string(),
        // -v makes ipmitool say why a session failed (wrong password vs. no answer); it never prints
        // the password.
        "-v".to_owned(),
    ]);
    args
}

async fn run(
    exe: &Path,
    bmc: &Bmc,
    timing: &Timing,
    command: &[&str],
    deadline: Instant,
) -> Result<String, CallError> {
    let what = format!("ipmitool {}", command.join(" "));
    let mut cmd = Command::new(exe);
    cmd.args(arguments(bmc, timing))
        .args(command)
        .env_clear()
        .env("IPMI_PASSWORD", bmc.password.expose())
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    let child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            CallError::new(
                ErrorKind::Config,
                format!(
                    "{} not found: install ipmitool (Debian: apt install ipmitool) or set \
                     `ipmitool = \"/path/to/ipmitool\"`",
                    exe.display()
                ),
            )
        } else {
            CallError::new(
                ErrorKind::Unexpected,
                format!("cannot start {}: {e}", exe.display()),
            )
            .temporary()
        }
    })?;
    let output = tokio::time::timeout_at(deadline, child.wait_with_output())
        .await
        .map_err(|_| {
            CallError::new(
                ErrorKind::Timeout,
                format!("{what} did not finish within {:?}", timing.timeout),
            )
        })?
        .map_err(|e| CallError::new(ErrorKind::Unexpected, format!("{what}: {e}")).temporary())?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(classify_failure(
        &what,
        &stderr,
        bmc.password.expose(),
        bmc.cipher,
    ))
}

/// Lines that say something (ipmitool's chatter under `-v` removed).
fn meaningful(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("Loading IANA PEN Registry")
                && !l.starts_with("Running Get VSO Capabilities")
                && !l.starts_with("Invalid completion code received")
                && !l.starts_with("Discovered IPMB address")
                && !l.starts_with("Get HPM.x Capabilities")
                && !l.contains("Unable to Get Channel Cipher Suites")
        })
        .collect()
}

/// `Chassis Power is on|off`, and nothing else.
pub(crate) fn parse_status(stdout: &str) -> Result<PowerState, CallError> {
    match meaningful(stdout).as_slice() {
        ["Chassis Power is on"] => Ok(PowerState::On),
        ["Chassis Power is off"] => Ok(PowerState::Off),
        _ => Err(unexpected(stdout, "Chassis Power is on|off")),
    }
}

fn unexpected(stdout: &str, expected: &str) -> CallError {
    let got: String = stdout.trim().chars().take(200).collect();
    CallError::new(
        ErrorKind::InvalidResponse,
        format!("ipmitool printed {got:?}, expected {expected:?}"),
    )
    .temporary()
}

/// Classifies a failed ipmitool run from what it printed on standard error.
pub(crate) fn classify_failure(what: &str, stderr: &str, password: &str, cipher: u8) -> CallError {
    let has = |s: &str| stderr.contains(s);
    let excerpt = {
        let lines = meaningful(stderr);
        let tail = &lines[lines.len().saturating_sub(3)..];
        let text: String = tail.join("; ").chars().take(300).collect();
        scrub(&text, password)
    };
    let (kind, why) = if has("RAKP 2 HMAC is invalid") {
        (ErrorKind::Auth, "wrong password for this user".to_owned())
    } else if has("unauthorized name") || has("Invalid user name") {
        (
            ErrorKind::Auth,
            "the BMC does not know this user".to_owned(),
        )
    } else if has("nauthorized role") || has("Insufficient privilege") {
        (
            ErrorKind::Auth,
            "the user may not have this privilege level".to_owned(),
        )
    } else if has("RAKP 2 message indicates an error")
        || has("RAKP 4 message indicates an error")
        || has("Activate Session command failed")
        || has("Get Session Challenge command failed")
    {
        (
            ErrorKind::Auth,
            "the BMC refused the credentials".to_owned(),
        )
    } else if has("invalid authentication algorithm")
        || has("invalid integrity algorithm")
        || has("invalid confidentiality algorithm")
        || has("no matching cipher suite")
        || has("Invalid cipher suite")
    {
        (
            ErrorKind::Unsupported,
            format!("the BMC does not support cipher suite {cipher}"),
        )
    } else if has("insufficient resources for session") {
        (
            ErrorKind::PeerFailure,
            "the BMC has no free session slot".to_owned(),
        )
    } else if has("Get Auth Capabilities error")
        || has("No response from remote controller")
        || has("Error issuing Get Channel Authentication Capabilities")
    {
        (ErrorKind::Timeout, "no answer from the BMC".to_owned())
    } else {
        (ErrorKind::PeerFailure, "ipmitool failed".to_owned())
    };
    let e = CallError::new(kind, format!("{what}: {why} ({excerpt})"));
    match kind {
        ErrorKind::Auth | ErrorKind::Unsupported => e.permanent(),
        _ => e.temporary(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use freezer_dr_core::{HostId, Retry, Secret};

    use super::*;
    use crate::config::{Backend, Privilege};

    #[test]
    fn status_output_is_parsed_strictly() {
        assert_eq!(
            parse_status("Chassis Power is on\n").unwrap(),
            PowerState::On
        );
        assert_eq!(
            parse_status("Loading IANA PEN Registry...\nChassis Power is off\n").unwrap(),
            PowerState::Off
        );
        for bad in [
            "",
            "Chassis Power is unknown",
            "Chassis Power is on\nChassis Power is off",
            "Chassis Power is onwards",
        ] {
            assert!(parse_status(bad).is_err(), "{bad:?} must not parse");
        }
    }

    #[test]
    fn failures_are_classified_from_stderr() {
        let c = |s| classify_failure("ipmitool chassis power status", s, "pw-123", 3);
        let wrong =
            c("> RAKP 2 HMAC is invalid\nError: Unable to establish IPMI v2 / RMCP+ session\n");
        assert_eq!(
            (wrong.kind, wrong.retry),
            (ErrorKind::Auth, Retry::Permanent)
        );
        let user = c("RAKP 2 message indicates an error : unauthorized name\n");
        assert_eq!(user.kind, ErrorKind::Auth);
        let silent = c(
            "Get Auth Capabilities error\nError issuing Get Channel Authentication Capabilities request\n",
        );
        assert_eq!(
            (silent.kind, silent.retry),
            (ErrorKind::Timeout, Retry::Temporary)
        );
        let cipher =
            c("Error in open session response message : invalid authentication algorithm\n");
        assert_eq!(cipher.kind, ErrorKind::Unsupported);
        let echoed = c("something odd about pw-123\n");
        assert!(!echoed.message.contains("pw-123"), "{}", echoed.message);
        assert_eq!(echoed.retry, Retry::Temporary);
    }

    #[test]
    fn the_password_never_reaches_the_command_line() {
        let bmc = Bmc {
            host: HostId::from("h"),
            address: "10.0.0.1".into(),
            port: 623,
            username: "admin".into(),
            password: Secret::new("s3cret-pw"),
            privilege: Privilege::Administrator,
            cipher: 17,
            lanplus: true,
            backend: Backend::Ipmitool,
        };
        let timing = Timing {
            timeout: Duration::from_secs(5),
            retransmit_interval: Duration::from_millis(1500),
            retransmits: 2,
        };
        let args = arguments(&bmc, &timing);
        assert!(!args.iter().any(|a| a.contains("s3cret")), "{args:?}");
        assert!(args.contains(&"-E".to_owned()));
        let joined = args.join(" ");
        assert!(joined.contains("-C 17"), "{joined}");
        assert!(joined.contains("-N 2 -R 2"), "{joined}");
    }
}
