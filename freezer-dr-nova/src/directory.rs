//! The `keystone` directory: who has a role on a project, with their email addresses.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use freezer_dr_core::{Directory, Error, ErrorKind, Recipient, Result};
use reqwest::Method as HttpMethod;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::config::{KeystoneConfig, Sources};
use crate::session::{Call, Service, Session};

/// Lists a project's users from Keystone role assignments, and names projects.
///
/// `GET /v3/role_assignments?scope.project.id=P&effective&include_names` (Keystone expands group
/// memberships and inherited roles), then each user's record for the email; `GET /v3/projects/P` for the
/// project's name. Answers are cached per project for `cache_ttl`, and user records for the same time;
/// failures are not cached.
#[derive(Debug)]
pub struct KeystoneDirectory {
    session: Session,
    ttl: Duration,
    projects: Mutex<HashMap<String, (Instant, Vec<Recipient>)>>,
    users: Mutex<HashMap<String, (Instant, UserRecord)>>,
    names: Mutex<HashMap<String, (Instant, String)>>,
}

impl KeystoneDirectory {
    /// A directory from its config (reads `clouds.yaml`/`OS_*` for missing credentials; no network I/O).
    pub fn new(cfg: KeystoneConfig) -> Result<Self> {
        let auth = cfg.auth.resolve(&Sources::process())?;
        Ok(Self {
            session: Session::new(auth, cfg.timeout, None)?,
            ttl: cfg.cache_ttl,
            projects: Mutex::new(HashMap::new()),
            users: Mutex::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
        })
    }

    async fn get(&self, path: &str, what: &str) -> Result<Value> {
        self.session
            .send(&Call {
                method: HttpMethod::GET,
                service: Service::Identity,
                path,
                body: None,
                microversion: None,
                what,
            })
            .await?
            .json(what)
    }

    async fn user(&self, id: &str, name: &str) -> Result<UserRecord> {
        if let Some((at, r)) = self.users.lock().await.get(id)
            && at.elapsed() < self.ttl
        {
            return Ok(r.clone());
        }
        let what = format!("read user {id}");
        let enc: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
        let r = match self.get(&format!("/users/{enc}"), &what).await {
            Ok(body) => {
                let u = body.get("user").cloned().unwrap_or(Value::Null);
                UserRecord {
                    user_id: id.to_owned(),
                    name: u
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or(name)
                        .to_owned(),
                    email: u
                        .get("email")
                        .and_then(Value::as_str)
                        .map(str::trim)
                        .filter(|e| e.contains('@'))
                        .map(str::to_owned),
                    enabled: u.get("enabled").and_then(Value::as_bool).unwrap_or(true),
                }
            }
            // Deleted between the two calls: nobody to tell.
            Err(e) if e.kind() == ErrorKind::NotFound => UserRecord {
                user_id: id.to_owned(),
                name: name.to_owned(),
                email: None,
                enabled: false,
            },
            Err(e) => return Err(e),
        };
        self.users
            .lock()
            .await
            .insert(id.to_owned(), (Instant::now(), r.clone()));
        Ok(r)
    }
}

/// A Keystone user, reduced to what we need.
#[derive(Clone, Debug)]
struct UserRecord {
    user_id: String,
    name: String,
    email: Option<String>,
    enabled: bool,
}

/// The users (id → name) in an effective role-assignment listing.
pub(crate) fn assigned_users(body: &Value) -> Result<BTreeMap<String, String>> {
    let list = body
        .get("role_assignments")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidResponse,
                "Keystone's role assignments have no \"role_assignments\" list",
            )
        })?;
    let mut users = BTreeMap::new();
    for a in list {
        if let Some(u) = a.get("user")
            && let Some(id) = u.get("id").and_then(Value::as_str)
        {
            let name = u.get("name").and_then(Value::as_str).unwrap_or(id);
            users.insert(id.to_owned(), name.to_owned());
        }
    }
    Ok(users)
}

/// The name in a `GET /v3/projects/{id}` answer.
fn project_name(body: &Value) -> Result<String> {
    body.get("project")
        .and_then(|p| p.get("name"))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidResponse,
                "Keystone's project record has no \"project.name\"",
            )
        })
}

#[async_trait]
impl Directory for KeystoneDirectory {
    async fn recipients(&self, project: &str) -> Result<Vec<Recipient>> {
        if let Some((at, r)) = self.projects.lock().await.get(project)
            && at.elapsed() < self.ttl
        {
            return Ok(r.clone());
        }
        let what = format!("list the users of project {project}");
        let enc: String = url::form_urlencoded::byte_serialize(project.as_bytes()).collect();
        let body = self
            .get(
                &format!("/role_assignments?scope.project.id={enc}&effective&include_names"),
                &what,
            )
            .await
            .map_err(|e| e.with_context("project", project))?;
        let users = assigned_users(&body).map_err(|e| e.with_context("project", project))?;
        let mut out = Vec::with_capacity(users.len());
        for (id, name) in users {
            let r = self
                .user(&id, &name)
                .await
                .map_err(|e| e.with_context("project", project))?;
            if r.enabled {
                out.push(Recipient {
                    user_id: r.user_id,
                    name: r.name,
                    email: r.email,
                });
            }
        }
        self.projects
            .lock()
            .await
            .insert(project.to_owned(), (Instant::now(), out.clone()));
        Ok(out)
    }

    async fn project_name(&self, project: &str) -> Result<Option<String>> {
        if let Some((at, name)) = self.names.lock().await.get(project)
            && at.elapsed() < self.ttl
        {
            return Ok(Some(name.clone()));
        }
        let enc: String = url::form_urlencoded::byte_serialize(project.as_bytes()).collect();
        let body = self
            .get(
                &format!("/projects/{enc}"),
                &format!("read project {project}"),
            )
            .await
            .map_err(|e| e.with_context("project", project))?;
        let name = project_name(&body).map_err(|e| e.with_context("project", project))?;
        self.names
            .lock()
            .await
            .insert(project.to_owned(), (Instant::now(), name.clone()));
        Ok(Some(name))
    }

    async fn healthcheck(&self) -> Result<()> {
        self.get("/auth/projects", "list the projects the token may use")
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn effective_assignments_list_each_user_once() {
        let body = json!({"role_assignments": [
            {"user": {"id": "u1", "name": "alice"}, "role": {"id": "r1"}, "scope": {"project": {"id": "p"}}},
            {"user": {"id": "u1", "name": "alice"}, "role": {"id": "r2"}, "scope": {"project": {"id": "p"}}},
            {"user": {"id": "u2", "name": "bob"}, "role": {"id": "r1"},
             "links": {"membership": "http://k/v3/groups/g1/users/u2"}, "scope": {"project": {"id": "p"}}}
        ]});
        let users = assigned_users(&body).unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users["u2"], "bob");
        assert!(assigned_users(&json!({})).is_err());
    }

    #[test]
    fn a_project_record_gives_its_name() {
        let body = json!({"project": {"id": "ef67", "name": " web-prod ", "domain_id": "default"}});
        assert_eq!(project_name(&body).unwrap(), "web-prod");
        for bad in [
            json!({}),
            json!({"project": {"id": "ef67"}}),
            json!({"project": {"name": " "}}),
        ] {
            let e = project_name(&bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidResponse, "{bad}");
        }
    }
}
