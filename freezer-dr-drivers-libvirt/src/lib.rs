//! freezer-dr fencer over libvirt: for clouds whose compute nodes are libvirt domains (labs, nested clouds,
//! CI). Powering a host off destroys its domain (hard off, optionally after a graceful shutdown); its
//! power status is the domain's state.
//!
//! Registered as fencer type `libvirt`; embedders build it with [`LibvirtFencer::new`] from a
//! [`LibvirtConfig`].
//!
//! - Only the hosts listed in the config (`hosts`, or `domains` for a domain with another name) are
//!   handled; any other host is not, so it is never powered off by this fencer.
//! - `power_off` of a domain already shut off succeeds; `power_status` reads `off` only for libvirt's
//!   `shut off` state; a state libvirt cannot read is an error, and a state that is neither clearly on nor
//!   clearly off (`nostate`, one this crate does not know) reads `unknown`.
//! - libvirt calls block: each runs on tokio's blocking pool under the configured `timeout`. A call past it
//!   is a temporary `timeout` error; its thread stays blocked until libvirt gives up on the socket, and the
//!   next call opens a fresh connection.
//! - One connection per fencer (its URI), probed before each use and reopened after the daemon
//!   restarted. libvirt's own printing of errors to stderr is switched off (process-wide) when the first
//!   fencer is built; errors are reported through [`freezer_dr_core::Error`].
//! - Credentials: `username`/`password` are answered to libvirt's auth callback (SASL on `+tcp`/`+tls`
//!   daemons). SSH URIs authenticate with the SSH agent or keys (`?keyfile=`), TLS URIs with client
//!   certificates in libvirt's usual places; libvirt does not take those from the callback.
//! - Domains must be persistent (defined): a transient domain vanishes when destroyed, and a domain that
//!   is not found never reads `off` (a wrong name must not look like a fenced host).

mod config;
mod conn;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use freezer_dr_core::registry::FencerRegistration;
use freezer_dr_core::{Error, ErrorKind, Fencer, HostId, PowerState, Result, async_trait};
use virt::connect::Connect;
use virt::domain::{Domain, DomainState};
use virt::error::ErrorNumber;

pub use config::LibvirtConfig;
use conn::{Credentials, Slot, is_connection_error};

/// Time between two state reads while waiting for a graceful shutdown.
const SHUTDOWN_POLL: Duration = Duration::from_millis(250);

/// Fences hosts that are libvirt domains. See the [crate docs](crate).
pub struct LibvirtFencer {
    uri: String,
    domains: BTreeMap<HostId, String>,
    timeout: Duration,
    graceful_shutdown: Option<Duration>,
    slot: Arc<Slot>,
}

impl std::fmt::Debug for LibvirtFencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibvirtFencer")
            .field("uri", &self.uri)
            .field("domains", &self.domains)
            .field("timeout", &self.timeout)
            .field("graceful_shutdown", &self.graceful_shutdown)
            .finish_non_exhaustive()
    }
}

/// What a domain's state means for fencing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Read {
    Off,
    On,
    Unknown,
}

impl From<Read> for PowerState {
    fn from(r: Read) -> Self {
        match r {
            Read::Off => PowerState::Off,
            Read::On => PowerState::On,
            Read::Unknown => PowerState::Unknown,
        }
    }
}

/// Reads a domain's state through `virDomainGetInfo`, whose failure is an error. (`virt`'s
/// `Domain::state()` reports a failed read as the state -1 instead, which must never pass for a state.)
fn read_state(dom: &Domain) -> Result<(Read, String), virt::error::Error> {
    let state = dom.info()?.state;
    let read = match state.known() {
        Some(DomainState::Shutoff) => Read::Off,
        // Active domains: the guest has (or may still have) CPUs, memory and disks in use. `crashed` is
        // an active domain kept for inspection; `shutdown` is on its way down but not there.
        Some(
            DomainState::Running
            | DomainState::Blocked
            | DomainState::Paused
            | DomainState::Shutdown
            | DomainState::Crashed
            | DomainState::PMSuspended,
        ) => Read::On,
        // `nostate`, or a state newer than this crate: not known, so never `off`.
        Some(DomainState::NoState) | None => Read::Unknown,
    };
    Ok((read, state.to_string()))
}

fn lookup(conn: &Connect, name: &str) -> Result<Domain, virt::error::Error> {
    conn.lookup_domain_by_name(name)
}

/// Classifies a libvirt error once: what kind, whether trying again can help.
fn classify(e: &virt::error::Error) -> ErrorKind {
    use ErrorNumber as N;
    match e.code().known() {
        Some(N::NoDomain) => ErrorKind::NotFound,
        Some(
            N::AuthFailed
            | N::AuthCancelled
            | N::AuthUnavailable
            | N::AccessDenied
            | N::OperationDenied,
        ) => ErrorKind::Auth,
        Some(
            N::SystemError
            | N::Rpc
            | N::InvalidConn
            | N::Ssh
            | N::Libssh
            | N::GnutlsError
            | N::NoServer,
        ) => ErrorKind::Unreachable,
        Some(N::OperationTimeout | N::AgentUnresponsive) => ErrorKind::Timeout,
        Some(N::NoSupport | N::OperationUnsupported | N::ArgumentUnsupported) => {
            ErrorKind::Unsupported
        }
        Some(N::OperationInvalid) => ErrorKind::Conflict,
        // `NoConnect` is "no connection driver available for <uri>": a URI this libvirt cannot serve. A
        // daemon that cannot be reached or went away arrives as a system/RPC error (above).
        Some(N::InvalidArg | N::InvalidDomain | N::NoName | N::XmlError | N::NoConnect) => {
            ErrorKind::Config
        }
        _ => ErrorKind::PeerFailure,
    }
}

fn libvirt_error(
    e: virt::error::Error,
    what: &str,
    host: Option<&HostId>,
    domain: Option<&str>,
    uri: &str,
) -> Error {
    let kind = classify(&e);
    let mut err = Error::new(kind, format!("libvirt: {what} failed"));
    if let Some(h) = host {
        err = err.with_context("host", h);
    }
    if let Some(d) = domain {
        err = err.with_context("domain", d);
    }
    err.with_context("uri", uri)
        .with_context("libvirt_code", e.code())
        .with_source(e)
}

impl LibvirtFencer {
    /// Builds the fencer from its config. Pure: it checks the config and opens nothing (the connection is
    /// opened on first use; [`Fencer::healthcheck`] opens it on purpose).
    pub fn new(config: LibvirtConfig) -> Result<Self> {
        let domains = config.domain_map()?;
        conn::silence_libvirt_stderr();
        let uri = config::redact_uri(&config.uri);
        let slot = Slot::new(
            config.uri,
            Credentials {
                username: config.username,
                password: config.password,
            },
        );
        Ok(Self {
            uri,
            domains,
            timeout: config.timeout,
            graceful_shutdown: config.graceful_shutdown,
            slot: Arc::new(slot),
        })
    }

    /// The libvirt domain that stands for `host`, if this fencer handles it.
    pub fn domain_for(&self, host: &HostId) -> Option<&str> {
        self.domains.get(host).map(String::as_str)
    }

    fn domain_or_refuse(&self, host: &HostId, what: &str) -> Result<String> {
        self.domain_for(host).map(str::to_owned).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("libvirt: refusing to {what}: the host is not listed in this fencer's hosts or domains"),
            )
            .with_context("host", host)
            .with_context("uri", &self.uri)
        })
    }

    /// Runs `op` with a live connection on the blocking pool, under the timeout; every libvirt error comes
    /// back classified and naming `what`, the host, the domain and the URI.
    async fn call<T: Send + 'static>(
        &self,
        what: &'static str,
        host: &HostId,
        domain: &str,
        op: impl FnOnce(&Connect, &str) -> Result<T, virt::error::Error> + Send + 'static,
    ) -> Result<T> {
        let slot = Arc::clone(&self.slot);
        let name = domain.to_owned();
        let task = tokio::task::spawn_blocking(move || {
            let conn = slot.get()?;
            let out = op(&conn, &name);
            if let Err(e) = &out
                && is_connection_error(e)
            {
                slot.forget();
            }
            out
        });
        match tokio::time::timeout(self.timeout, task).await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(libvirt_error(e, what, Some(host), Some(domain), &self.uri)),
            Ok(Err(join)) => Err(Error::new(
                ErrorKind::Unexpected,
                format!("libvirt: {what} failed: the blocking call panicked"),
            )
            .with_context("host", host)
            .with_context("domain", domain)
            .with_context("uri", &self.uri)
            .with_source(join)),
            Err(_) => {
                // The call may be stuck on a dead socket; the next call opens a fresh connection.
                self.slot.forget();
                Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "libvirt: {what} did not finish within {}",
                        humantime::format_duration(self.timeout)
                    ),
                )
                .with_context("host", host)
                .with_context("domain", domain)
                .with_context("uri", &self.uri))
            }
        }
    }

    /// Reads the domain's state.
    async fn read(&self, host: &HostId, domain: &str) -> Result<(Read, String)> {
        self.call("read domain state", host, domain, |conn, name| {
            read_state(&lookup(conn, name)?)
        })
        .await
    }

    /// Asks the guest to shut down and waits up to `limit` for the domain to read off. Returns whether it
    /// did; a failure here is logged and the caller destroys the domain anyway.
    async fn shutdown_gracefully(&self, host: &HostId, domain: &str, limit: Duration) -> bool {
        let asked = self
            .call("request graceful shutdown", host, domain, |conn, name| {
                let dom = lookup(conn, name)?;
                if read_state(&dom)?.0 == Read::Off {
                    return Ok(());
                }
                dom.shutdown()
            })
            .await;
        if let Err(e) = asked {
            tracing::warn!(host = %host, domain, error = %e, "graceful shutdown refused; destroying");
            return false;
        }
        let deadline = Instant::now() + limit;
        loop {
            match self.read(host, domain).await {
                Ok((Read::Off, _)) => return true,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(host = %host, domain, error = %e, "state unreadable during graceful shutdown");
                }
            }
            if Instant::now() >= deadline {
                tracing::warn!(host = %host, domain, limit = %humantime::format_duration(limit),
                    "graceful shutdown did not finish in time; destroying");
                return false;
            }
            // Waiting is what a graceful shutdown is; it is bounded by `graceful_shutdown`.
            tokio::time::sleep(
                SHUTDOWN_POLL.min(deadline.saturating_duration_since(Instant::now())),
            )
            .await;
        }
    }
}

#[async_trait]
impl Fencer for LibvirtFencer {
    fn handles(&self, host: &HostId) -> bool {
        self.domains.contains_key(host)
    }

    async fn power_off(&self, host: &HostId) -> Result<()> {
        let domain = self.domain_or_refuse(host, "power off")?;
        if let Some(limit) = self.graceful_shutdown
            && self.shutdown_gracefully(host, &domain, limit).await
        {
            tracing::info!(host = %host, domain, "domain shut down gracefully");
            return Ok(());
        }
        let already_off = self
            .call("destroy domain", host, &domain, |conn, name| {
                let dom = lookup(conn, name)?;
                match dom.destroy() {
                    Ok(()) => Ok(false),
                    // Destroying a domain that is not running is refused; if it reads shut off, the
                    // host is where we want it.
                    Err(e) if e.code().is(ErrorNumber::OperationInvalid) => match read_state(&dom)?
                    {
                        (Read::Off, _) => Ok(true),
                        _ => Err(e),
                    },
                    Err(e) => Err(e),
                }
            })
            .await?;
        tracing::info!(host = %host, domain, already_off, "domain destroyed");
        Ok(())
    }

    async fn power_status(&self, host: &HostId) -> Result<PowerState> {
        let domain = self.domain_or_refuse(host, "read power status")?;
        let (read, state) = self.read(host, &domain).await?;
        tracing::debug!(host = %host, domain, state, "domain state");
        Ok(read.into())
    }

    async fn power_on(&self, host: &HostId) -> Result<()> {
        let domain = self.domain_or_refuse(host, "power on")?;
        self.call("start domain", host, &domain, |conn, name| {
            let dom = lookup(conn, name)?;
            match read_state(&dom)? {
                (Read::Off, _) => dom.create().map(|_| ()),
                // Running, paused, crashed...: it is on; starting it again is refused by libvirt.
                _ => Ok(()),
            }
        })
        .await?;
        tracing::info!(host = %host, domain, "domain started");
        Ok(())
    }

    async fn healthcheck(&self) -> Result<()> {
        let domains: Vec<(HostId, String)> = self
            .domains
            .iter()
            .map(|(h, d)| (h.clone(), d.clone()))
            .collect();
        let Some((first_host, first_domain)) = domains.first().cloned() else {
            return Ok(());
        };
        let missing = self
            .call(
                "check domains exist",
                &first_host,
                &first_domain,
                move |conn, _| {
                    let mut missing = Vec::new();
                    for (host, domain) in &domains {
                        match conn.lookup_domain_by_name(domain) {
                            Ok(_) => {}
                            Err(e) if e.code().is(ErrorNumber::NoDomain) => {
                                missing.push(format!("{host} → {domain}"));
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(missing)
                },
            )
            .await?;
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::NotFound,
                format!("libvirt: domains not found: {}", missing.join(", ")),
            )
            .with_context("uri", &self.uri))
        }
    }
}

freezer_dr_core::register! {
    FencerRegistration {
        name: "libvirt",
        description: "Power control of compute nodes that are libvirt domains (destroy/start), for labs and nested clouds.",
        example: "type = \"libvirt\"\nuri = \"qemu+ssh://fence@hypervisor-1/system\"\nhosts = [\"compute-1\", \"compute-2\"]\ndomains = { \"compute-3.example.org\" = \"compute-3\" }\ntimeout = \"20s\"\n# graceful_shutdown = \"30s\"\n# username = \"fence\"\n# password = { env = \"LIBVIRT_PASSWORD\" }\n",
        build: |ctx| Ok(Box::new(LibvirtFencer::new(ctx.parse()?)?)),
    }
}
