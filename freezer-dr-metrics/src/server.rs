//! The HTTP listener: `/metrics`, `/healthz`, `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use freezer_dr_core::runtime::{HaRole, Status};
use freezer_dr_core::{Error, ErrorKind, Result, Timestamp};
use tokio::net::TcpListener;
use tracing::{error, info};

use crate::Metrics;

/// The loop turns at least once a second: a last turn older than this means it is stuck.
pub const ALIVE_WITHIN: Duration = Duration::from_secs(10);

/// `/healthz`: the loop is alive (its last turn is recent).
pub fn alive(status: Option<&Status>, now: Timestamp) -> std::result::Result<String, String> {
    let Some(s) = status else {
        return Err("starting: the loop has not turned yet".into());
    };
    let age = now.since(s.at);
    if age > ALIVE_WITHIN {
        return Err(format!(
            "the loop last turned {:.1}s ago (more than {}s): it is stuck",
            age.as_secs_f64(),
            ALIVE_WITHIN.as_secs()
        ));
    }
    Ok(format!(
        "alive: the loop turned {:.1}s ago",
        age.as_secs_f64()
    ))
}

/// `/readyz`: alive and observing successfully; in HA, the leader observing or a healthy standby.
pub fn ready(status: Option<&Status>, now: Timestamp) -> std::result::Result<String, String> {
    alive(status, now)?;
    let Some(s) = status else {
        return Err("starting".into());
    };
    match &s.ha {
        Some(HaRole::Standby { healthy: true }) => return Ok("ready: healthy standby".into()),
        Some(HaRole::Standby { healthy: false }) => {
            return Err("standby without a live election lease (etcd unreachable?)".into());
        }
        _ => {}
    }
    if s.observing() {
        Ok(format!("ready: {}", s.summary()))
    } else {
        Err(format!("not observing: {}", s.summary()))
    }
}

fn answer(r: std::result::Result<String, String>) -> Response {
    match r {
        Ok(text) => (StatusCode::OK, text + "\n").into_response(),
        Err(text) => (StatusCode::SERVICE_UNAVAILABLE, text + "\n").into_response(),
    }
}

async fn metrics_text(State(m): State<Arc<Metrics>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        m.encode(),
    )
        .into_response()
}

async fn healthz(State(m): State<Arc<Metrics>>) -> Response {
    answer(alive(m.last_status().as_ref(), Timestamp::now()))
}

async fn readyz(State(m): State<Arc<Metrics>>) -> Response {
    answer(ready(m.last_status().as_ref(), Timestamp::now()))
}

/// Binds `listen` now (an error names the address), then serves in a task until the process ends.
/// Returns the bound address (port 0 picks a free one).
pub async fn serve(metrics: Arc<Metrics>, listen: SocketAddr) -> Result<SocketAddr> {
    let listener = TcpListener::bind(listen).await.map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!("metrics.listen: cannot listen on {listen}: {e}; choose a free port"),
        )
    })?;
    let bound = listener.local_addr().unwrap_or(listen);
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(metrics);
    info!(address = %bound, "metrics and health endpoints listening");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            error!(error = %e, "the metrics listener stopped");
        }
    });
    Ok(bound)
}
