//! Faults a real Prometheus does not produce on demand, from a scripted HTTP server: `status: error`
//! answers, a 500 from a proxy, an answer that is not JSON, no answer in time, a partial answer with
//! warnings; and the bearer token, sent but never logged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use freezer_dr_core::testing::CapturedLog;
use freezer_dr_core::{ErrorKind, Health, Monitor, Secret};
use freezer_dr_prometheus::{PrometheusConfig, PrometheusMonitor};

type Script = dyn Fn(&str) -> (StatusCode, String) + Send + Sync;

#[derive(Clone)]
struct Server {
    script: Arc<Script>,
    delay: Duration,
    /// The `Authorization` header of every request.
    auth: Arc<Mutex<Vec<String>>>,
}

async fn query(State(s): State<Server>, headers: HeaderMap, body: String) -> (StatusCode, String) {
    if let Some(a) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        s.auth.lock().unwrap().push(a.to_owned());
    }
    tokio::time::sleep(s.delay).await;
    (s.script)(&body)
}

/// Serves `script` (given the form-encoded request body) at `/prom/api/v1/query`; the root URL.
async fn serve(
    delay: Duration,
    script: impl Fn(&str) -> (StatusCode, String) + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let auth = Arc::new(Mutex::new(Vec::new()));
    let state = Server {
        script: Arc::new(script),
        delay,
        auth: auth.clone(),
    };
    let app = Router::new()
        .route("/prom/api/v1/query", post(query))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/prom", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, auth)
}

fn vector(series: &[(&str, &str)]) -> String {
    let result: Vec<String> = series
        .iter()
        .map(|(instance, v)| {
            format!(
                r#"{{"metric":{{"__name__":"up","instance":"{instance}","job":"node"}},"value":[1700000000.1,"{v}"]}}"#
            )
        })
        .collect();
    format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
        result.join(",")
    )
}

fn monitor(url: &str) -> PrometheusMonitor {
    let mut c = PrometheusConfig::new(url);
    c.hosts = [
        ("compute-1".to_owned(), "10.0.0.11:9100".to_owned()),
        ("compute-2".to_owned(), "10.0.0.12:9100".to_owned()),
    ]
    .into();
    c.timeout = Duration::from_millis(800);
    PrometheusMonitor::new(c).unwrap()
}

/// The down query's form body (the present query's has no `%3D%3D` for `==`).
fn is_down_query(body: &str) -> bool {
    body.contains("%3D%3D+0") || body.contains("%3D%3D%200")
}

#[tokio::test]
async fn prometheus_s_own_errors_fail_the_observation_with_its_message() {
    for (status, body, kind, temporary, want) in [
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            r#"{"status":"error","errorType":"execution","error":"many-to-many matching not allowed"}"#,
            ErrorKind::PeerFailure,
            true,
            "Prometheus refused it (execution): many-to-many matching not allowed",
        ),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}"#,
            ErrorKind::Timeout,
            true,
            "Prometheus refused it (timeout): query timed out",
        ),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "upstream connect error",
            ErrorKind::PeerFailure,
            true,
            "HTTP 500 Internal Server Error: upstream connect error",
        ),
        (
            StatusCode::OK,
            "<html>login</html>",
            ErrorKind::InvalidResponse,
            true,
            "the answer is not a Prometheus API response: <html>login</html>",
        ),
        (
            StatusCode::OK,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":"x"}]}}"#,
            ErrorKind::InvalidResponse,
            false,
            "the vector cannot be read",
        ),
        (
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            ErrorKind::Auth,
            false,
            "HTTP 401 Unauthorized",
        ),
    ] {
        let body = body.to_owned();
        let (url, _) = serve(Duration::ZERO, move |q| {
            if is_down_query(q) {
                (status, body.clone())
            } else {
                (StatusCode::OK, vector(&[("10.0.0.11:9100", "1")]))
            }
        })
        .await;
        let e = monitor(&url).observe().await.unwrap_err();
        assert_eq!(e.kind(), kind, "{status}: {e}");
        assert_eq!(e.is_temporary(), temporary, "{status}: {e}");
        let text = e.to_string();
        assert!(
            text.contains("Prometheus query down_query `up{job=\"node\"} == 0`")
                && text.contains(want),
            "{status}: {want:?} not in {text}"
        );
    }
}

#[tokio::test]
async fn a_query_without_an_answer_in_time_fails_within_the_timeout() {
    let (url, _) = serve(Duration::from_secs(30), |_| (StatusCode::OK, vector(&[]))).await;
    let m = monitor(&url);
    let start = Instant::now();
    let e = m.observe().await.unwrap_err();
    let took = start.elapsed();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.is_temporary());
    assert!(e.to_string().contains("no answer within 800ms"), "{e}");
    // Both queries run at once, each bounded by the timeout (a bound on correctness, not a speed).
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test]
async fn a_partial_answer_is_used_and_its_warnings_logged_and_the_token_is_sent_never_logged() {
    let log = CapturedLog::install().unwrap();
    let token = "Bearer-T0ken-do-not-log";
    let (url, auth) = serve(Duration::ZERO, |q| {
        let mut v = if is_down_query(q) {
            vector(&[("10.0.0.12:9100", "0")])
        } else {
            vector(&[("10.0.0.11:9100", "1"), ("10.0.0.12:9100", "0")])
        };
        // A partial answer: one store did not respond.
        v.insert_str(
            v.len() - 1,
            r#","warnings":["remote store eu-1 did not answer"]"#,
        );
        (StatusCode::OK, v)
    })
    .await;
    let mut c = PrometheusConfig::new(&url);
    c.hosts = [
        ("compute-1".to_owned(), "10.0.0.11:9100".to_owned()),
        ("compute-2".to_owned(), "10.0.0.12:9100".to_owned()),
    ]
    .into();
    c.bearer_token = Some(Secret::new(token));
    let m = PrometheusMonitor::new(c).unwrap();
    let seen = m.observe().await.unwrap();
    let h = |name: &str| {
        seen.iter()
            .find(|h| h.host.as_str() == name)
            .map(|h| h.health.clone())
            .unwrap()
    };
    assert_eq!(h("compute-1"), Health::Up);
    assert!(h("compute-2").is_down(), "{seen:?}");
    assert_eq!(
        auth.lock().unwrap().as_slice(),
        [format!("Bearer {token}"), format!("Bearer {token}")]
    );
    let text = log.text();
    assert!(
        text.contains("remote store eu-1 did not answer") && text.contains("partial response"),
        "{text}"
    );
    assert!(!text.contains(token), "the token reached the log:\n{text}");
    assert!(!format!("{m:?}").contains(token));
}
