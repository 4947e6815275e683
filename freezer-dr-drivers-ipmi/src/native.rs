//! The native backend: ipmi-rs's RMCP+ session, with the chassis commands ipmi-rs lacks, the privilege
//! raise it never sends, and retransmits of lost datagrams within one call.
//!
//! Everything here blocks (ipmi-rs uses a blocking `UdpSocket`): the fencer runs it on
//! `spawn_blocking`, with its own deadline around it.

use std::io;
use std::time::{Duration, Instant};

use freezer_dr_core::{ErrorKind, PowerState};
use ipmi_rs::connection::{
    IpmiConnection as _, LogicalUnit, Message, NetFn, Request, RequestTargetAddress,
};
use ipmi_rs::rmcp::Rmcp;
use ipmi_rs::rmcp::{
    ActivationError, RmcpIpmiError, RmcpIpmiReceiveError, RmcpIpmiSendError, V2_0ActivationError,
    V2_0WriteError,
};

use crate::call::{CallError, Op, Reply, Timing};
use crate::config::Bmc;

/// Chassis: Get Chassis Status.
const GET_CHASSIS_STATUS: u8 = 0x01;
/// Chassis: Chassis Control.
const CHASSIS_CONTROL: u8 = 0x02;
const CONTROL_POWER_DOWN: u8 = 0x00;
const CONTROL_POWER_UP: u8 = 0x01;
/// App: Set Session Privilege Level.
const SET_SESSION_PRIVILEGE: u8 = 0x3B;
/// App: Close Session.
const CLOSE_SESSION: u8 = 0x3C;

/// Runs `op` on `bmc` in one RMCP+ session, closed at the end (BMCs have few session slots).
pub(crate) fn call(bmc: &Bmc, op: Op, timing: &Timing) -> Result<Reply, CallError> {
    let deadline = timing.deadline();
    let mut session = Session::open(bmc, timing, deadline)?;
    let result = session.run(bmc, op);
    session.close();
    result
}

struct Session {
    rmcp: Rmcp,
    retransmits: u32,
    deadline: Instant,
}

impl Session {
    fn open(bmc: &Bmc, timing: &Timing, deadline: Instant) -> Result<Self, CallError> {
        let mut last = None;
        // A lost datagram anywhere in the handshake (ASF ping, RMCP+ open session, RAKP) restarts it:
        // ipmi-rs has no retransmits of its own.
        for _ in 0..=timing.retransmits {
            let Some(wait) = wait_until(deadline, timing.retransmit_interval) else {
                break;
            };
            let mut rmcp = Rmcp::new((bmc.address.as_str(), bmc.port), wait).map_err(|e| {
                CallError::new(
                    ErrorKind::Unreachable,
                    format!("cannot resolve the BMC address: {e}"),
                )
            })?;
            match rmcp.activate(
                true,
                Some(bmc.username.as_str()),
                Some(bmc.password.expose().as_bytes()),
            ) {
                Ok(()) => {
                    return Ok(Self {
                        rmcp,
                        retransmits: timing.retransmits,
                        deadline,
                    });
                }
                Err(e) => match activation_error(e) {
                    Lost(e) => last = Some(e),
                    Failed(e) => return Err(e),
                },
            }
        }
        Err(last.unwrap_or_else(|| no_time("opening an RMCP+ session")))
    }

    fn run(&mut self, bmc: &Bmc, op: Op) -> Result<Reply, CallError> {
        // ipmi-rs opens the session at its lowest privilege; chassis control needs it raised first
        // (0xD4, insufficient privilege, otherwise).
        let got = self.exchange(NetFn::App, SET_SESSION_PRIVILEGE, &[bmc.privilege.value()])?;
        if got.first().map(|p| p & 0x0F) != Some(bmc.privilege.value()) {
            return Err(CallError::new(
                ErrorKind::InvalidResponse,
                format!(
                    "the BMC did not raise the session to {} privilege (answered {got:02x?})",
                    bmc.privilege
                ),
            ));
        }
        let state = self.power_state()?;
        let (wanted, control) = match op {
            Op::Status => return Ok(Reply::State(state)),
            Op::Off => (PowerState::Off, CONTROL_POWER_DOWN),
            Op::On => (PowerState::On, CONTROL_POWER_UP),
        };
        if state == wanted {
            return Ok(Reply::Already);
        }
        self.exchange(NetFn::Chassis, CHASSIS_CONTROL, &[control])?;
        Ok(Reply::Sent)
    }

    fn power_state(&mut self) -> Result<PowerState, CallError> {
        let data = self.exchange(NetFn::Chassis, GET_CHASSIS_STATUS, &[])?;
        // Byte 1 ("current power state"), bit 0: system power is on. Bytes 2 and 3 are mandatory too.
        match data.as_slice() {
            [power, _, _, ..] => Ok(if power & 0x01 == 0x01 {
                PowerState::On
            } else {
                PowerState::Off
            }),
            _ => Err(CallError::new(
                ErrorKind::InvalidResponse,
                format!(
                    "Get Chassis Status answered {} bytes, expected at least 3",
                    data.len()
                ),
            )
            .temporary()),
        }
    }

    /// Best effort: a session left open holds one of the BMC's few slots until it times out (polling
    /// would exhaust them within a minute).
    fn close(&mut self) {
        let Some(id) = session_id(&self.rmcp) else {
            tracing::debug!("IPMI: session id unknown: the session is left to time out on the BMC");
            return;
        };
        if let Err(e) = self.exchange(NetFn::App, CLOSE_SESSION, &id.to_le_bytes()) {
            tracing::debug!(error = %e.message, "IPMI: closing the session failed");
        }
    }

    /// Sends one request and waits for its reply, sending it again when a reply is lost, within the
    /// retransmit budget and the call's deadline. Returns the reply's data after a successful
    /// completion code.
    fn exchange(&mut self, netfn: NetFn, cmd: u8, data: &[u8]) -> Result<Vec<u8>, CallError> {
        let what = command_name(netfn, cmd);
        for _ in 0..=self.retransmits {
            if Instant::now() >= self.deadline {
                break;
            }
            let mut request = Request::new(
                Message::new_request(netfn, cmd, data.to_vec()),
                RequestTargetAddress::Bmc(LogicalUnit::Zero),
            );
            self.rmcp
                .send(&mut request)
                .map_err(|e| connection_error(what, e))?;
            loop {
                match self.rmcp.recv() {
                    Ok(reply) if reply.netfn() == netfn && reply.cmd() == cmd => {
                        return completion(what, reply.cc(), reply.data());
                    }
                    // A late reply to an earlier request of this session: not ours.
                    Ok(_) if Instant::now() < self.deadline => continue,
                    Ok(_) => break,
                    Err(RmcpIpmiError::Receive(RmcpIpmiReceiveError::Io(e))) if lost(&e) => break,
                    Err(e) => return Err(connection_error(what, e)),
                }
            }
        }
        Err(CallError::new(
            ErrorKind::Timeout,
            format!(
                "no reply to {what} after {} sends",
                self.retransmits.saturating_add(1)
            ),
        ))
    }
}

/// The BMC's id of the active RMCP+ session, which Close Session needs. ipmi-rs 0.6 keeps it private
/// and shows it only in its `Debug` output (which redacts the password and keys); ipmi_sim and the IPMI
/// spec refuse Close Session without it. If a later ipmi-rs changes that output, sessions are left to
/// time out and `native_sessions_are_closed_so_polling_never_runs_out_of_slots` fails.
fn session_id(rmcp: &Rmcp) -> Option<u32> {
    let text = format!("{rmcp:?}");
    let (_, state) = text.split_once("V2_0(State")?;
    let (_, rest) = state.split_once("session_id: ")?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The wait for the next datagram: `interval`, shortened to what is left before `deadline`.
fn wait_until(deadline: Instant, interval: Duration) -> Option<Duration> {
    let left = deadline.checked_duration_since(Instant::now())?;
    let wait = left.min(interval);
    // A zero read timeout is refused by the socket.
    (wait >= Duration::from_millis(1)).then_some(wait)
}

fn no_time(what: &str) -> CallError {
    CallError::new(
        ErrorKind::Timeout,
        format!("no time left for {what} within the call's timeout"),
    )
}

fn lost(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn io_error(what: &str, e: &io::Error) -> CallError {
    if lost(e) {
        CallError::new(ErrorKind::Timeout, format!("no reply to {what}"))
    } else if e.kind() == io::ErrorKind::ConnectionRefused {
        CallError::new(
            ErrorKind::Unreachable,
            format!("{what}: nothing listens at the BMC address (connection refused)"),
        )
    } else {
        CallError::new(ErrorKind::Unreachable, format!("{what}: {e}"))
    }
}

fn command_name(netfn: NetFn, cmd: u8) -> &'static str {
    match (netfn, cmd) {
        (NetFn::Chassis, GET_CHASSIS_STATUS) => "Get Chassis Status",
        (NetFn::Chassis, CHASSIS_CONTROL) => "Chassis Control",
        (NetFn::App, SET_SESSION_PRIVILEGE) => "Set Session Privilege Level",
        (NetFn::App, CLOSE_SESSION) => "Close Session",
        _ => "an IPMI command",
    }
}

fn connection_error(what: &str, e: RmcpIpmiError) -> CallError {
    match e {
        RmcpIpmiError::Receive(RmcpIpmiReceiveError::Io(io)) => io_error(what, &io),
        RmcpIpmiError::Send(RmcpIpmiSendError::V2_0(V2_0WriteError::Io(io))) => io_error(what, &io),
        RmcpIpmiError::NotActive => {
            CallError::new(ErrorKind::Unexpected, format!("{what}: no active session"))
        }
        other => CallError::new(
            ErrorKind::InvalidResponse,
            format!("{what}: unreadable reply ({other:?})"),
        )
        .temporary(),
    }
}

/// Checks the completion code of a reply.
fn completion(what: &str, cc: u8, data: &[u8]) -> Result<Vec<u8>, CallError> {
    let (kind, meaning) = match cc {
        0x00 => return Ok(data.to_vec()),
        0xC0 => (ErrorKind::PeerFailure, "node busy"),
        0xC3 => (
            ErrorKind::PeerFailure,
            "timeout while processing the command",
        ),
        0xCE | 0xD2 => (ErrorKind::PeerFailure, "response unavailable"),
        0xD3 => (ErrorKind::PeerFailure, "destination unavailable"),
        0xFF => (ErrorKind::PeerFailure, "unspecified error"),
        0xD4 => (
            ErrorKind::Auth,
            "insufficient privilege (the BMC user needs operator or administrator)",
        ),
        0xD5 => (
            ErrorKind::Conflict,
            "cannot execute the command in the current state",
        ),
        0xC1 => (
            ErrorKind::Unsupported,
            "invalid command (not supported by this BMC)",
        ),
        0xD6 => (ErrorKind::Unsupported, "sub-function disabled"),
        _ => (ErrorKind::InvalidResponse, "refused"),
    };
    let e = CallError::new(
        kind,
        format!("{what}: completion code 0x{cc:02X}: {meaning}"),
    );
    // Busy and current-state refusals may pass; the rest will not.
    Err(
        if kind == ErrorKind::PeerFailure || kind == ErrorKind::Conflict {
            e.temporary()
        } else {
            e.permanent()
        },
    )
}

enum Activation {
    /// A datagram was lost: opening the session again may work.
    Lost(CallError),
    /// Opening the session again will not help.
    Failed(CallError),
}
use Activation::{Failed, Lost};

fn recv_failure(what: &str, e: &RmcpIpmiReceiveError) -> Activation {
    match e {
        RmcpIpmiReceiveError::Io(io) if lost(io) => Lost(io_error(what, io)),
        RmcpIpmiReceiveError::Io(io) => Failed(io_error(what, io)),
        other => Failed(
            CallError::new(
                ErrorKind::InvalidResponse,
                format!("{what}: unreadable reply ({other:?})"),
            )
            .temporary(),
        ),
    }
}

fn activation_error(e: ActivationError) -> Activation {
    let auth = |m: String| Failed(CallError::new(ErrorKind::Auth, m).permanent());
    match e {
        ActivationError::BindSocket(io) => Failed(CallError::new(
            ErrorKind::Unexpected,
            format!("cannot open a UDP socket: {io}"),
        )
        .temporary()),
        ActivationError::PingSend(io) => Failed(io_error("the ASF presence ping", &io)),
        ActivationError::PongReceive(io) if lost(&io) => {
            // ipmi-rs insists on an ASF pong; some BMCs (virtualbmc, pyghmi) never send one but do
            // speak RMCP+ to ipmitool.
            Lost(io_error("the ASF presence ping", &io).fallback())
        }
        ActivationError::PongReceive(io) => Failed(io_error("the ASF presence ping", &io)),
        ActivationError::PongRead | ActivationError::RmcpError(_) => Failed(
            CallError::new(
                ErrorKind::InvalidResponse,
                "the BMC's ASF pong is not one ipmi-rs can read",
            )
            .fallback(),
        ),
        ActivationError::IpmiNotSupported => Failed(
            CallError::new(
                ErrorKind::Unsupported,
                "the ASF pong says this address does not support IPMI",
            )
            .fallback(),
        ),
        ActivationError::NoSupportedIpmiLANVersions | ActivationError::V1_5(_) => Failed(
            CallError::new(
                ErrorKind::Unsupported,
                "the BMC offers no RMCP+ (IPMI v2.0) session, and ipmi-rs's RMCP 1.5 is broken",
            )
            .fallback(),
        ),
        ActivationError::GetChannelAuthenticationCapabilities(e) => match e {
            ipmi_rs::IpmiError::Connection(RmcpIpmiError::Receive(r)) => {
                match recv_failure("Get Channel Authentication Capabilities", &r) {
                    Lost(e) => Lost(e.fallback()),
                    Failed(e) => Failed(e.fallback()),
                }
            }
            other => Failed(
                CallError::new(
                    ErrorKind::InvalidResponse,
                    format!("Get Channel Authentication Capabilities failed: {other:?}"),
                )
                .fallback(),
            ),
        },
        ActivationError::V2_0(e) => match e {
            V2_0ActivationError::Io(io) => Failed(io_error("the RMCP+ handshake", &io)),
            V2_0ActivationError::OpenSessionRequestSend(V2_0WriteError::Io(io))
            | V2_0ActivationError::SendRakpMessage1(V2_0WriteError::Io(io))
            | V2_0ActivationError::RakpMessage3Send(V2_0WriteError::Io(io)) => {
                Failed(io_error("the RMCP+ handshake", &io))
            }
            V2_0ActivationError::OpenSessionResponseReceive(r) => {
                recv_failure("the RMCP+ Open Session Request", &r)
            }
            V2_0ActivationError::RakpMessage2Receive(r) => recv_failure("RAKP message 1", &r),
            V2_0ActivationError::RakpMessage4Receive(r) => recv_failure("RAKP message 3", &r),
            V2_0ActivationError::OpenSessionResponseParse(p) => {
                let text = format!("{p:?}");
                if text.contains("InsufficientResources") {
                    Failed(
                        CallError::new(
                            ErrorKind::PeerFailure,
                            "the BMC has no free session slot (insufficient resources)",
                        )
                        .temporary(),
                    )
                } else {
                    Failed(
                        CallError::new(
                            ErrorKind::Unsupported,
                            format!("the BMC refused the RMCP+ session for cipher suite 3: {text}"),
                        )
                        .fallback(),
                    )
                }
            }
            V2_0ActivationError::RakpMessage2Parse(p) => auth(format!(
                "the BMC refused the user or its privilege (RAKP message 2: {p:?})"
            )),
            V2_0ActivationError::ServerAuthenticationFailed => auth(
                "the BMC's RAKP message 2 does not match our password: wrong password for this user"
                    .into(),
            ),
            V2_0ActivationError::RakpMessage4Parse(p) => {
                auth(format!("the BMC refused our credentials (RAKP message 4: {p:?})"))
            }
            V2_0ActivationError::RakpMessage4InvalidIntegrityCheckValue => {
                auth("the BMC's RAKP message 4 does not match our keys".into())
            }
            other => Failed(
                CallError::new(
                    ErrorKind::InvalidResponse,
                    format!("RMCP+ handshake failed: {other:?}"),
                )
                .temporary(),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_codes_are_classified() {
        assert!(completion("x", 0, &[1, 2]).is_ok());
        let busy = completion("x", 0xC0, &[]).unwrap_err();
        assert_eq!(busy.kind, ErrorKind::PeerFailure);
        assert_eq!(busy.retry, freezer_dr_core::Retry::Temporary);
        let privilege = completion("Chassis Control", 0xD4, &[]).unwrap_err();
        assert_eq!(privilege.kind, ErrorKind::Auth);
        assert_eq!(privilege.retry, freezer_dr_core::Retry::Permanent);
        assert!(privilege.message.contains("0xD4"), "{}", privilege.message);
    }

    #[test]
    fn the_wait_never_passes_the_deadline() {
        let soon = Instant::now() + Duration::from_millis(200);
        assert!(wait_until(soon, Duration::from_secs(1)).unwrap() <= Duration::from_millis(200));
        assert_eq!(wait_until(Instant::now(), Duration::from_secs(1)), None);
    }
}
