//! A scripted Keystone + Nova HTTP server (axum) for what a real Nova cannot do on demand: 500s, 409s,
//! hangs, slow answers, tokens revoked mid-run, pagination, injected latency. It is never the only proof
//! that the Nova code works (tests/lab.rs runs against a real Nova).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// What the next matching call gets instead of the normal answer.
#[derive(Clone, Debug)]
pub enum Fault {
    /// This status with this body.
    Status(u16, Value),
    /// Answer normally, but only after this long.
    Delay(Duration),
    /// This redirect status with this `Location`.
    Redirect(u16, String),
}

#[derive(Default)]
pub struct State {
    pub latency: Duration,
    pub token_life: Duration,
    pub max_version: String,
    pub tokens: BTreeMap<String, SystemTime>,
    pub services: Vec<Value>,
    pub servers: BTreeMap<String, Value>,
    /// Evacuation migration records (`GET /os-migrations`), each with its `instance_uuid`.
    pub migrations: Vec<Value>,
    /// Keystone projects by id (`GET /identity/v3/projects/{id}`).
    pub projects: BTreeMap<String, Value>,
    /// (method, path prefix, fault), consumed in order when matched.
    pub faults: VecDeque<(Method, String, Fault)>,
    /// Every API call after auth: (method, path with query).
    pub log: Vec<(Method, String)>,
    pub auth_calls: u64,
    /// Reject every API call with 401, even with fresh tokens.
    pub refuse_all_tokens: bool,
    /// First and last evacuation-related calls (for the benchmark).
    pub evac_first: Option<Instant>,
    pub evac_last: Option<Instant>,
    /// When the last answer about each server was sent, to time the client between two calls about the
    /// same server (for the benchmark).
    pub answered: BTreeMap<String, Instant>,
    /// Sum and count of those gaps: from an answer about a server to the next request about it.
    pub think: (Duration, u64),
    /// Sum (in seconds, signed: a wait may also end early) of how much longer than `latency` the
    /// injected waits took, and their count.
    pub overslept: (f64, u64),
}

#[derive(Clone)]
pub struct Scripted {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
}

static REQ: AtomicU64 = AtomicU64::new(1);

impl Scripted {
    /// Starts on a free port on 127.0.0.1 (on the current tokio runtime).
    pub async fn start() -> Scripted {
        let state = Arc::new(Mutex::new(State {
            token_life: Duration::from_secs(3600),
            max_version: "2.104".into(),
            ..Default::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let st = Arc::clone(&state);
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let st = Arc::clone(&st);
                async move { handle(st, addr, method, uri, headers, body).await }
            },
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Scripted { addr, state }
    }

    pub fn auth_url(&self) -> String {
        format!("http://{}/identity/v3", self.addr)
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    pub fn fault(&self, method: Method, prefix: &str, f: Fault) {
        self.with(|s| s.faults.push_back((method, prefix.to_owned(), f)));
    }

    /// `n` hosts `<prefix><i>`, all up and enabled, heartbeats fresh.
    pub fn add_hosts(&self, names: &[String]) {
        let now = fmt_time(SystemTime::now());
        self.with(|s| {
            for h in names {
                s.services.push(json!({
                    "id": format!("svc-{h}"), "binary": "nova-compute", "host": h, "zone": "nova",
                    "status": "enabled", "state": "up", "forced_down": false,
                    "updated_at": now, "disabled_reason": null,
                }));
            }
        });
    }

    pub fn set_down(&self, host: &str) {
        let old = fmt_time(SystemTime::now() - Duration::from_secs(600));
        self.with(|s| {
            for svc in &mut s.services {
                if svc["host"] == host {
                    svc["state"] = json!("down");
                    svc["updated_at"] = json!(old);
                }
            }
        });
    }

    /// A volume-backed, ACTIVE server on `host`.
    pub fn add_server(&self, id: &str, host: &str) {
        self.with(|s| {
            s.servers.insert(
                id.to_owned(),
                json!({
                    "id": id, "name": format!("vm-{id}"), "status": "ACTIVE",
                    "tenant_id": "p1", "user_id": "u1", "metadata": {}, "image": "",
                    "OS-EXT-SRV-ATTR:host": host, "OS-EXT-STS:task_state": null,
                }),
            );
        });
    }

    /// A Keystone project `id` named `name`.
    pub fn add_project(&self, id: &str, name: &str) {
        self.with(|s| {
            s.projects.insert(
                id.to_owned(),
                json!({"id": id, "name": name, "domain_id": "default", "enabled": true}),
            );
        });
    }

    /// Sets fields of a server (`{"OS-EXT-STS:task_state": "spawning"}`).
    pub fn patch_server(&self, id: &str, fields: Value) {
        self.with(|s| {
            let server = s.servers.get_mut(id).expect("no such server");
            if let (Some(v), Some(f)) = (server.as_object_mut(), fields.as_object()) {
                v.extend(f.clone());
            }
        });
    }

    pub fn calls(&self, method: &Method, prefix: &str) -> usize {
        self.with(|s| {
            s.log
                .iter()
                .filter(|(m, p)| m == method && p.starts_with(prefix))
                .count()
        })
    }
}

pub fn fmt_time(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t)
        .to_string()
        .trim_end_matches('Z')
        .to_owned()
}

fn reply(status: u16, body: Value) -> Response {
    let mut r = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response();
    let id = format!("req-scripted-{}", REQ.fetch_add(1, Ordering::Relaxed));
    r.headers_mut().insert(
        "x-openstack-request-id",
        HeaderValue::from_str(&id).expect("ascii"),
    );
    r
}

fn query(uri: &Uri) -> BTreeMap<String, String> {
    uri.query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

async fn handle(
    st: Arc<Mutex<State>>,
    addr: SocketAddr,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let full = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let (latency, fault) = {
        let mut s = st.lock().unwrap();
        let i = s
            .faults
            .iter()
            .position(|(m, p, _)| *m == method && full.starts_with(p.as_str()));
        (s.latency, i.and_then(|i| s.faults.remove(i)).map(|f| f.2))
    };
    // The server a call is about (a read of its migrations, of itself, or an action), for the timing.
    let about = uri
        .query()
        .and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("instance_uuid="))
        })
        .or_else(|| path.strip_prefix("/compute/v2.1/servers/"))
        .map(|id| id.trim_end_matches("/action").to_owned())
        .filter(|id| !id.is_empty() && id != "detail");
    if let Some(id) = &about {
        let mut s = st.lock().unwrap();
        if let Some(t) = s.answered.get(id).copied() {
            s.think.0 += t.elapsed();
            s.think.1 += 1;
        }
    }
    if !latency.is_zero() {
        let t = Instant::now();
        wait_precisely(latency).await;
        let over = t.elapsed().as_secs_f64() - latency.as_secs_f64();
        let mut s = st.lock().unwrap();
        s.overslept.0 += over;
        s.overslept.1 += 1;
    }
    let answer = answer(&st, addr, method, uri, headers, body, fault, path, full).await;
    if let Some(id) = about {
        st.lock().unwrap().answered.insert(id, Instant::now());
    }
    answer
}

/// Waits about `d`: tokio's timer has 1 ms ticks and wakes in the tick after the deadline (1.2–1.6 ms
/// late per 50 ms wait, measured here), which the benchmark would count as the client's; so it asks
/// for 1 ms less. What is left over is measured and printed by the benchmark. (Sleeping the last
/// milliseconds on a blocking thread is exact, but its thread switches took 15% more client CPU on a
/// 2-core machine.)
async fn wait_precisely(d: Duration) {
    tokio::time::sleep(d.saturating_sub(Duration::from_millis(1))).await;
}

/// The answer to one call, after the injected wait.
#[allow(clippy::too_many_arguments)]
async fn answer(
    st: &Arc<Mutex<State>>,
    addr: SocketAddr,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    fault: Option<Fault>,
    path: String,
    full: String,
) -> Response {
    match fault {
        Some(Fault::Status(code, b)) => {
            st.lock().unwrap().log.push((method, full));
            return reply(code, b);
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        Some(Fault::Redirect(code, location)) => {
            st.lock().unwrap().log.push((method, full));
            let mut r = reply(code, json!({}));
            r.headers_mut()
                .insert("location", HeaderValue::from_str(&location).expect("ascii"));
            return r;
        }
        None => {}
    }

    if path == "/stats" {
        // For the benchmark: what the client did, measured here (no token needed, never in the log).
        let s = st.lock().unwrap();
        let count = |m: &Method, f: &dyn Fn(&str) -> bool| {
            s.log.iter().filter(|(lm, p)| lm == m && f(p)).count()
        };
        let window = match (s.evac_first, s.evac_last) {
            (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64(),
            _ => 0.0,
        };
        return reply(
            200,
            json!({
                "calls": s.log.len(),
                "auth": s.auth_calls,
                "evacuate_posts": count(&Method::POST, &|p| p.ends_with("/action")),
                "server_gets": count(&Method::GET, &|p| {
                    p.starts_with("/compute/v2.1/servers/") && !p.contains("detail")
                }),
                "migration_gets": count(&Method::GET, &|p| p.starts_with("/compute/v2.1/os-migrations")),
                "evac_window_s": window,
                "think_ms": s.think.0.as_secs_f64() * 1e3 / s.think.1.max(1) as f64,
                "overslept_ms": s.overslept.0 * 1e3 / s.overslept.1.max(1) as f64,
            }),
        );
    }
    if path == "/identity/v3/auth/tokens" && method == Method::POST {
        let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let pw = req["auth"]["identity"]["password"]["user"]["password"].as_str();
        let ac = req["auth"]["identity"]["application_credential"]["secret"].as_str();
        if pw != Some("s3cret-pw") && ac != Some("s3cret-ac") {
            return reply(
                401,
                json!({"error": {"code": 401, "title": "Unauthorized",
                "message": "The request you have made requires authentication."}}),
            );
        }
        let mut s = st.lock().unwrap();
        s.auth_calls += 1;
        let token = format!("tok-{}-{}", s.auth_calls, fastish());
        let exp = SystemTime::now() + s.token_life;
        s.tokens.insert(token.clone(), exp);
        let mut r = reply(
            201,
            json!({"token": {
            "expires_at": format!("{}Z", fmt_time(exp)),
            "catalog": [
                {"type": "identity", "endpoints": [
                    {"interface": "public", "region_id": "RegionOne",
                     "url": format!("http://{addr}/identity/v3")}]},
                {"type": "compute", "endpoints": [
                    {"interface": "internal", "region_id": "RegionOne",
                     "url": format!("http://{addr}/wrong-interface/v2.1")},
                    {"interface": "public", "region_id": "RegionTwo",
                     "url": format!("http://{addr}/wrong-region/v2.1")},
                    {"interface": "public", "region_id": "RegionOne",
                     "url": format!("http://{addr}/compute/v2.1")}]}
            ]}}),
        );
        r.headers_mut().insert(
            "x-subject-token",
            HeaderValue::from_str(&token).expect("ascii"),
        );
        return r;
    }

    // Everything else needs a valid token.
    let token = headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    {
        let mut s = st.lock().unwrap();
        s.log.push((method.clone(), full.clone()));
        let valid = s
            .tokens
            .get(token)
            .is_some_and(|exp| SystemTime::now() < *exp);
        if !valid || s.refuse_all_tokens {
            return reply(
                401,
                json!({"error": {"code": 401, "message": "The request you have made requires authentication."}}),
            );
        }
    }

    if let Some(id) = path.strip_prefix("/identity/v3/projects/")
        && method == Method::GET
    {
        return match st.lock().unwrap().projects.get(id) {
            Some(p) => reply(200, json!({ "project": p })),
            None => reply(
                404,
                json!({"error": {"code": 404, "title": "Not Found",
                       "message": format!("Could not find project: {id}.")}}),
            ),
        };
    }
    let Some(rest) = path.strip_prefix("/compute/v2.1") else {
        return reply(
            404,
            json!({"itemNotFound": {"code": 404, "message": "no such API"}}),
        );
    };
    let q = query(&uri);
    let mut s = st.lock().unwrap();
    match (method.clone(), rest) {
        (Method::GET, "" | "/") => reply(
            200,
            json!({"version": {"id": "v2.1", "status": "CURRENT", "min_version": "2.1",
                   "version": s.max_version}}),
        ),
        (Method::GET, "/os-services") => {
            let list: Vec<Value> = s
                .services
                .iter()
                .filter(|v| q.get("host").is_none_or(|h| v["host"] == h.as_str()))
                .cloned()
                .collect();
            reply(200, json!({ "services": list }))
        }
        (Method::PUT, p) if p.starts_with("/os-services/") => {
            let id = &p["/os-services/".len()..];
            let change: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let Some(svc) = s.services.iter_mut().find(|v| v["id"] == id) else {
                return reply(
                    404,
                    json!({"itemNotFound": {"code": 404, "message": "no service"}}),
                );
            };
            if let Some(obj) = change.as_object() {
                for (k, v) in obj {
                    svc[k] = v.clone();
                }
            }
            let svc = svc.clone();
            reply(200, json!({ "service": svc }))
        }
        (Method::GET, "/servers/detail") => {
            // Deliberately sloppy like a regex filter: `host=c1` also matches `c10`. The client must
            // filter exactly.
            let host = q.get("host").cloned().unwrap_or_default();
            let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(1000);
            let mut list: Vec<&Value> = s
                .servers
                .values()
                .filter(|v| {
                    v["OS-EXT-SRV-ATTR:host"]
                        .as_str()
                        .is_some_and(|h| h.starts_with(&host))
                })
                .collect();
            if let Some(m) = q.get("marker") {
                match list.iter().position(|v| v["id"] == m.as_str()) {
                    Some(i) => list = list.split_off(i + 1),
                    None => {
                        return reply(
                            400,
                            json!({"badRequest": {"code": 400, "message": "marker not found"}}),
                        );
                    }
                }
            }
            let more = list.len() > limit;
            list.truncate(limit);
            let mut out = json!({ "servers": list });
            if more {
                out["servers_links"] = json!([{"rel": "next", "href": "http://elsewhere/next"}]);
            }
            reply(200, out)
        }
        (Method::GET, "/os-migrations") => {
            let list: Vec<&Value> = s
                .migrations
                .iter()
                .filter(|m| {
                    q.get("instance_uuid")
                        .is_none_or(|id| m["instance_uuid"] == id.as_str())
                })
                .collect();
            reply(200, json!({ "migrations": list }))
        }
        (Method::GET, p) if p.starts_with("/servers/") => {
            let id = &p["/servers/".len()..];
            let now = Instant::now();
            match s.servers.get(id).cloned() {
                Some(v) => {
                    if v["OS-EXT-SRV-ATTR:host"]
                        .as_str()
                        .is_some_and(|h| h.starts_with("target"))
                    {
                        s.evac_last = Some(now);
                    }
                    reply(200, json!({ "server": v }))
                }
                None => reply(
                    404,
                    json!({"itemNotFound": {"code": 404, "message": "Instance could not be found."}}),
                ),
            }
        }
        (Method::POST, p) if p.starts_with("/servers/") && p.ends_with("/action") => {
            let id = &p["/servers/".len()..p.len() - "/action".len()];
            let action: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let now = Instant::now();
            if s.evac_first.is_none() {
                s.evac_first = Some(now);
            }
            let Some(v) = s.servers.get_mut(id) else {
                return reply(
                    404,
                    json!({"itemNotFound": {"code": 404, "message": "Instance could not be found."}}),
                );
            };
            let busy = |action: &str, attr: &str, state: &Value| {
                // Nova's InstanceInvalidState, as the API returns it.
                reply(
                    409,
                    json!({"conflictingRequest": {"code": 409, "message": format!(
                        "Cannot '{action}' instance {id} while it is in {attr} {}",
                        state.as_str().unwrap_or("?"))}}),
                )
            };
            if action.get("evacuate").is_some() {
                let task = v["OS-EXT-STS:task_state"].clone();
                if !task.is_null() {
                    return busy("evacuate", "task_state", &task);
                }
                // The fake evacuates at once: the next read shows it settled on a new host.
                v["OS-EXT-SRV-ATTR:host"] = json!("target-1");
                reply(200, Value::Null)
            } else if action.get("os-start").is_some() {
                let status = v["status"].clone();
                if status != "SHUTOFF" {
                    return busy(
                        "start",
                        "vm_state",
                        &json!(status.as_str().map(str::to_lowercase)),
                    );
                }
                v["status"] = json!("ACTIVE");
                reply(202, Value::Null)
            } else {
                reply(202, Value::Null)
            }
        }
        _ => reply(
            404,
            json!({"itemNotFound": {"code": 404, "message": format!("no route {rest}")}}),
        ),
    }
}

fn fastish() -> u64 {
    REQ.fetch_add(1, Ordering::Relaxed)
}
