//! A scripted Redfish BMC (axum) for what sushy-emulator cannot do on demand: sessions whose tokens
//! expire, a reset answered with a `Task`, a BMC that accepts ForceOff and stays on, 503s, a hang.
//! It is never the only proof that the fencer works (tests/emulator.rs runs against sushy-tools).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub const USER: &str = "fence";
pub const SYSTEM: &str = "/redfish/v1/Systems/Self";
/// Not the usual `Actions/ComputerSystem.Reset`: the fencer must use the target the system names.
pub const TARGET: &str = "/redfish/v1/Systems/Self/Actions/Vendor.Reset";
const SESSIONS: &str = "/redfish/v1/SessionService/Sessions";
const MONITOR: &str = "/redfish/v1/TaskService/TaskMonitors/7";

/// How the reset is answered.
#[derive(Clone, Debug, Default)]
pub enum Reset {
    /// 204, done.
    #[default]
    Sync,
    /// 202 with a task monitor that answers 202 `running` times, then the task with this state.
    Task { running: u32, end: &'static str },
}

pub struct State {
    pub password: String,
    pub sessions: bool,
    /// Each token is refused after this many uses (a session that expires mid-call).
    pub token_uses: Option<u32>,
    pub power: &'static str,
    /// ForceOff is accepted but the power stays on.
    pub sticky_on: bool,
    pub allowed: Vec<&'static str>,
    pub reset: Reset,
    pub task_polls: u32,
    /// (path prefix, status, body), consumed in order when matched.
    pub faults: VecDeque<(String, u16, Value)>,
    /// Every request never answers.
    pub hang: bool,
    /// (method, path, auth: "basic" / "token" / "none").
    pub log: Vec<(Method, String, &'static str)>,
    pub live_sessions: BTreeSet<String>,
    pub created: u32,
    pub deleted: u32,
    pub resets: Vec<String>,
    next: u32,
    uses: std::collections::BTreeMap<String, u32>,
}

#[derive(Clone)]
pub struct Scripted {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
}

impl Scripted {
    /// Starts on a free port of 127.0.0.1 (on the current tokio runtime).
    pub async fn start(password: &str) -> Scripted {
        let state = Arc::new(Mutex::new(State {
            password: password.to_owned(),
            sessions: true,
            token_uses: None,
            power: "On",
            sticky_on: false,
            allowed: vec!["On", "ForceOff", "GracefulShutdown", "ForceRestart"],
            reset: Reset::Sync,
            task_polls: 0,
            faults: VecDeque::new(),
            hang: false,
            log: Vec::new(),
            live_sessions: BTreeSet::new(),
            created: 0,
            deleted: 0,
            resets: Vec::new(),
            next: 0,
            uses: Default::default(),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let st = Arc::clone(&state);
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let st = Arc::clone(&st);
                async move { handle(&st, method, uri, headers, body).await }
            },
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Scripted { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    pub fn fault(&self, prefix: &str, status: u16, body: Value) {
        self.with(|s| s.faults.push_back((prefix.to_owned(), status, body)));
    }

    /// The section of a fencer for host `compute-1` on this BMC.
    pub fn section(&self, password: &str, extra: &str) -> String {
        format!(
            "timeout = \"2s\"\ntask_timeout = \"3s\"\n{extra}\n[hosts.compute-1]\nurl = \"{}\"\n\
             username = \"{USER}\"\npassword = \"{password}\"\nsystem = \"{SYSTEM}\"\n",
            self.url()
        )
    }
}

fn reply(status: u16, body: Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A Redfish error body with one `@Message.ExtendedInfo` message.
pub fn redfish_error(id: &str, message: &str) -> Value {
    json!({"error": {"code": "Base.1.8.GeneralError", "message": "A general error has occurred.",
        "@Message.ExtendedInfo": [{"MessageId": id, "Message": message}]}})
}

async fn handle(
    st: &Arc<Mutex<State>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if st.lock().unwrap().hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let path = uri.path().trim_end_matches('/').to_owned();
    let mut s = st.lock().unwrap();
    let token = headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let how = match (&token, &basic) {
        (Some(_), _) => "token",
        (None, Some(_)) => "basic",
        _ => "none",
    };
    s.log.push((method.clone(), path.clone(), how));
    if let Some(i) = s
        .faults
        .iter()
        .position(|(p, _, _)| path.starts_with(p.as_str()))
    {
        let (_, status, body) = s.faults.remove(i).unwrap();
        return reply(status, body);
    }
    if path == "/redfish/v1" && method == Method::GET {
        let mut root = json!({"@odata.id": "/redfish/v1/", "RedfishVersion": "1.15.0",
            "Systems": {"@odata.id": "/redfish/v1/Systems"}, "Links": {}});
        if s.sessions {
            root["Links"]["Sessions"] = json!({"@odata.id": SESSIONS});
            root["SessionService"] = json!({"@odata.id": "/redfish/v1/SessionService"});
        }
        return reply(200, root);
    }
    if path == SESSIONS && method == Method::POST && s.sessions {
        let b: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if b["UserName"] != USER || b["Password"] != s.password.as_str() {
            return reply(
                401,
                redfish_error("Base.1.8.NoValidSession", "Invalid username or password."),
            );
        }
        s.next += 1;
        s.created += 1;
        let id = s.next.to_string();
        let tok = format!("tok-{id}-f00d");
        s.live_sessions.insert(tok.clone());
        let location = format!("{SESSIONS}/{id}");
        return (
            StatusCode::CREATED,
            [
                ("x-auth-token", tok.as_str()),
                ("location", location.as_str()),
                ("content-type", "application/json"),
            ],
            json!({"@odata.id": location, "Id": id, "UserName": USER}).to_string(),
        )
            .into_response();
    }
    // Authentication of everything else.
    let authorized = match (&token, &basic) {
        (Some(t), _) => {
            // Deleting its own session is not a use; a token past its uses has expired.
            if !path.starts_with(SESSIONS) {
                let limit = s.token_uses;
                let n = s.uses.entry(t.clone()).or_insert(0);
                *n += 1;
                if limit.is_some_and(|l| *n > l) {
                    s.live_sessions.remove(t);
                }
            }
            s.live_sessions.contains(t)
        }
        (None, Some(b)) => {
            let want = format!("{USER}:{}", s.password);
            b.strip_prefix("Basic ")
                .and_then(decode_base64)
                .is_some_and(|d| d == want.as_bytes())
        }
        _ => false,
    };
    if !authorized {
        return reply(
            401,
            redfish_error(
                "Base.1.8.NoValidSession",
                "There is no valid session established with the implementation.",
            ),
        );
    }
    if path.starts_with(SESSIONS) && method == Method::DELETE {
        if let Some(t) = &token {
            s.live_sessions.remove(t);
        }
        s.deleted += 1;
        return StatusCode::NO_CONTENT.into_response();
    }
    if path == "/redfish/v1/Systems" {
        return reply(
            200,
            json!({"Members": [{"@odata.id": SYSTEM}], "Members@odata.count": 1}),
        );
    }
    if path == SYSTEM && method == Method::GET {
        return reply(
            200,
            json!({"@odata.id": SYSTEM, "Id": "Self", "UUID": "0f1e2d3c-0000-4000-8000-00000000a1b2",
                "PowerState": s.power,
                "Actions": {"#ComputerSystem.Reset": {"target": TARGET,
                    "ResetType@Redfish.AllowableValues": s.allowed}}}),
        );
    }
    if path == TARGET && method == Method::POST {
        let b: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let kind = b["ResetType"].as_str().unwrap_or("").to_owned();
        s.resets.push(kind.clone());
        if !s.allowed.contains(&kind.as_str()) {
            return reply(
                400,
                redfish_error("Base.1.8.ActionParameterValueNotInList", "bad ResetType"),
            );
        }
        return match s.reset.clone() {
            Reset::Sync => {
                apply(&mut s, &kind);
                StatusCode::NO_CONTENT.into_response()
            }
            Reset::Task { .. } => {
                s.task_polls = 0;
                (
                    StatusCode::ACCEPTED,
                    [("location", MONITOR), ("content-type", "application/json")],
                    json!({"@odata.id": "/redfish/v1/TaskService/Tasks/7", "TaskState": "New"})
                        .to_string(),
                )
                    .into_response()
            }
        };
    }
    if path == MONITOR && method == Method::GET {
        let Reset::Task { running, end } = s.reset.clone() else {
            return reply(404, json!({}));
        };
        s.task_polls += 1;
        if s.task_polls <= running {
            return reply(202, json!({"TaskState": "Running", "PercentComplete": 50}));
        }
        if end == "Completed" {
            apply(&mut s, "ForceOff");
        }
        let mut task = json!({"@odata.id": "/redfish/v1/TaskService/Tasks/7", "TaskState": end});
        if end != "Completed" {
            task["Messages"] = json!([{"MessageId": "Oem.1.0.PowerControlFailed",
                "Message": "The power controller did not respond."}]);
        }
        return reply(200, task);
    }
    reply(
        404,
        redfish_error(
            "Base.1.8.ResourceMissingAtURI",
            &format!("The resource at the URI {path} was not found."),
        ),
    )
}

fn apply(s: &mut State, kind: &str) {
    match kind {
        "ForceOff" if !s.sticky_on => s.power = "Off",
        "On" | "ForceOn" => s.power = "On",
        _ => {}
    }
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.trim_end_matches('=').bytes() {
        let v = T.iter().position(|&t| t == c)? as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    Some(out)
}
