//! The etcd client's calls: one call under a timeout with its error classified, JSON records, TLS.

use std::future::Future;
use std::time::Duration;

use etcd_client::{GetResponse, KeyValue, TxnOpResponse};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::config::HaTlsConfig;
use crate::{Error, ErrorKind, Result};

/// One etcd call under `timeout`, its error classified.
pub(super) async fn call<T>(
    timeout: Duration,
    what: &str,
    fut: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(etcd_error(e, what)),
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            format!(
                "etcd: {what}: no answer within {}",
                humantime::format_duration(timeout)
            ),
        )),
    }
}

/// Classifies an etcd client error once: unreachable and overloaded are temporary; refused credentials
/// are `auth`; a request etcd refuses as invalid (too many operations, too large) is permanent.
pub(super) fn etcd_error(e: etcd_client::Error, what: &str) -> Error {
    use etcd_client::Error as E;
    let (kind, detail) = match &e {
        E::GRpcStatus(s) => {
            let code: i32 = s.code().into();
            let kind = match code {
                // Unauthenticated, PermissionDenied.
                16 | 7 => ErrorKind::Auth,
                // Cancelled, DeadlineExceeded, ResourceExhausted, Aborted, Unavailable.
                1 | 4 | 8 | 10 | 14 => ErrorKind::Unreachable,
                // InvalidArgument, FailedPrecondition, OutOfRange: etcd refused the request itself.
                3 | 9 | 11 => ErrorKind::Journal,
                _ => ErrorKind::PeerFailure,
            };
            // etcd answers refused credentials with InvalidArgument ("authentication failed, invalid
            // user ID or password"), so the message decides.
            let msg = s.message();
            let auth = [
                "authentication failed",
                "permission denied",
                "invalid auth token",
                "user name",
            ]
            .iter()
            .any(|m| msg.contains(m));
            (if auth { ErrorKind::Auth } else { kind }, msg.to_owned())
        }
        E::TransportError(_) | E::IoError(_) => (ErrorKind::Unreachable, e.to_string()),
        E::InvalidUri(_) | E::InvalidArgs(_) | E::EndpointError(_) => {
            (ErrorKind::Config, e.to_string())
        }
        _ => (ErrorKind::PeerFailure, e.to_string()),
    };
    let err = Error::new(kind, format!("etcd: {what}: {detail}"));
    match kind {
        ErrorKind::Unreachable | ErrorKind::PeerFailure => err.temporary(),
        _ => err.permanent(),
    }
}

pub(super) fn encode<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| {
        Error::new(ErrorKind::Journal, "cannot encode a journal record").with_source(e)
    })
}

pub(super) fn decode<T: DeserializeOwned>(kv: &KeyValue) -> Result<T> {
    serde_json::from_slice(kv.value()).map_err(|e| {
        Error::new(
            ErrorKind::Journal,
            "an etcd journal record cannot be read (written by another freezer-dr version, or \
             edited by hand?)",
        )
        .with_context("key", String::from_utf8_lossy(kv.key()))
        .with_source(e)
    })
}

pub(super) fn get_responses(resp: &etcd_client::TxnResponse) -> Vec<GetResponse> {
    resp.op_responses()
        .into_iter()
        .filter_map(|r| match r {
            TxnOpResponse::Get(g) => Some(g),
            _ => None,
        })
        .collect()
}

/// The TLS options of the etcd client from `[ha.tls]` (files read now, so a missing one is a config error).
pub(super) fn tls_options(tls: &HaTlsConfig) -> Result<etcd_client::TlsOptions> {
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            Error::config(format!("ha.tls.{key}: cannot read {}: {e}", path.display()))
        })
    };
    let mut opts = etcd_client::TlsOptions::new().ca_certificate(
        etcd_client::Certificate::from_pem(read("ca_file", &tls.ca_file)?),
    );
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        opts = opts.identity(etcd_client::Identity::from_pem(
            read("cert_file", cert)?,
            read("key_file", key)?,
        ));
    }
    Ok(opts)
}
