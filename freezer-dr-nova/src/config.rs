//! Configuration: the `[monitor]`/`[evacuator]` (`type = "nova"`) and `[directory]` (`type = "keystone"`)
//! sections, and the Keystone credentials they share, from the section, `clouds.yaml` or `OS_*` variables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use freezer_dr_core::{Error, Result, Secret};
use serde::Deserialize;

use crate::microversion::Microversion;

/// Keystone v3 credentials and how to reach the API (`[monitor.auth]`, `[evacuator.auth]`,
/// `[directory.auth]`).
///
/// Every key is optional: what the section leaves out comes from the `clouds.yaml` entry named by `cloud`
/// (or `OS_CLOUD`), and without a cloud from the `OS_*` variables, the way openstackclient reads them.
/// Either a password (`username` + `password` + a project) or an application credential
/// (`application_credential_id` or `_name` + `_secret`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// A `clouds.yaml` entry to read (default: `OS_CLOUD`).
    pub cloud: Option<String>,
    /// Keystone's URL (`http://keystone:5000/v3`; `/v3` is added if missing).
    pub auth_url: Option<String>,
    /// User name (password auth).
    pub username: Option<String>,
    /// User id (password auth, instead of a name).
    pub user_id: Option<String>,
    /// The user's domain name (default `Default`).
    pub user_domain_name: Option<String>,
    /// The user's domain id.
    pub user_domain_id: Option<String>,
    /// Password.
    pub password: Option<Secret>,
    /// Project to scope the token to (needs an admin role for Nova's admin calls).
    pub project_name: Option<String>,
    /// Project id, instead of a name.
    pub project_id: Option<String>,
    /// The project's domain name (default `Default`).
    pub project_domain_name: Option<String>,
    /// The project's domain id.
    pub project_domain_id: Option<String>,
    /// Application credential id.
    pub application_credential_id: Option<String>,
    /// Application credential name (with `username`/`user_id`).
    pub application_credential_name: Option<String>,
    /// Application credential secret.
    pub application_credential_secret: Option<Secret>,
    /// Region of the endpoints to use.
    pub region_name: Option<String>,
    /// Endpoint interface: `public` (default), `internal` or `admin`.
    pub interface: Option<String>,
    /// A PEM CA bundle to trust (besides the system's).
    pub cacert: Option<PathBuf>,
    /// Skip TLS verification (never in production).
    pub insecure: Option<bool>,
}

/// `[monitor]` and `[evacuator]` with `type = "nova"`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NovaConfig {
    /// Keystone credentials (missing keys come from `clouds.yaml` / `OS_*`).
    pub auth: AuthConfig,
    /// Time limit on every HTTP call.
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// The highest compute API microversion to use (default `2.94`: from 2.95 Nova leaves evacuated servers
    /// SHUTOFF).
    pub microversion_cap: Microversion,
    /// Use this compute endpoint instead of the catalog's.
    pub compute_endpoint: Option<String>,
    /// A host whose last heartbeat is older than this is down, whatever Nova's `state` says (Nova's own
    /// `service_down_time` is 60 s by default).
    #[serde(with = "humantime_serde_compat")]
    pub heartbeat_timeout: Duration,
    /// How far back the monitor counts a forced-down host's distinct heartbeats before it reads the
    /// repaired host up (three are needed; the newest must still be younger than `heartbeat_timeout`).
    /// Default: three times `heartbeat_timeout`, which always holds three beats of a `nova-compute` whose
    /// `report_interval` is below `heartbeat_timeout`. Must not be shorter than `heartbeat_timeout`.
    #[serde(with = "humantime_serde_compat::option")]
    pub heartbeat_window: Option<Duration>,
    /// Servers per page when listing a host's instances.
    pub page_size: u32,
    /// With microversion 2.95 or later, start an evacuated server that Nova left SHUTOFF if it was running
    /// before (restores the previous power state). The driver reports it as needing a start; the engine
    /// sends the start as a journaled command.
    pub restore_power_state: bool,
    /// Before microversion 2.14 Nova asks whether the instance storage is shared (`onSharedStorage`).
    pub on_shared_storage: bool,
}

impl Default for NovaConfig {
    fn default() -> Self {
        Self {
            auth: AuthConfig::default(),
            timeout: Duration::from_secs(30),
            microversion_cap: Microversion::DEFAULT_CAP,
            compute_endpoint: None,
            heartbeat_timeout: Duration::from_secs(60),
            heartbeat_window: None,
            page_size: 200,
            restore_power_state: false,
            on_shared_storage: false,
        }
    }
}

/// `[directory]` with `type = "keystone"`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeystoneConfig {
    /// Keystone credentials (missing keys come from `clouds.yaml` / `OS_*`).
    pub auth: AuthConfig,
    /// Time limit on every HTTP call.
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// How long a project's recipients are reused before Keystone is asked again.
    #[serde(with = "humantime_serde_compat")]
    pub cache_ttl: Duration,
}

impl Default for KeystoneConfig {
    fn default() -> Self {
        Self {
            auth: AuthConfig::default(),
            timeout: Duration::from_secs(30),
            cache_ttl: Duration::from_secs(600),
        }
    }
}

/// Durations as humantime strings (`"30s"`, `"1m 30s"`).
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!("{s:?} is not a duration like \"30s\": {e}"))
        })
    }

    /// An optional duration (a missing key is `None`).
    pub(super) mod option {
        use std::time::Duration;

        use serde::Deserializer;

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

impl NovaConfig {
    /// The window over which a forced-down host's heartbeats are counted (`heartbeat_window`, default
    /// three times `heartbeat_timeout`); an error naming the key if it is shorter than `heartbeat_timeout`.
    pub(crate) fn heartbeat_window(&self) -> Result<Duration> {
        let w = self
            .heartbeat_window
            .unwrap_or_else(|| self.heartbeat_timeout.saturating_mul(3));
        if w < self.heartbeat_timeout {
            return Err(Error::config(format!(
                "heartbeat_window ({}) is shorter than heartbeat_timeout ({}): a repaired host could \
                 never show three heartbeats; set it to at least three times nova-compute's \
                 report_interval and no less than heartbeat_timeout, or leave it out (default: three \
                 times heartbeat_timeout)",
                humantime::format_duration(w),
                humantime::format_duration(self.heartbeat_timeout)
            )));
        }
        Ok(w)
    }
}

/// How to authenticate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    Password {
        user: Identity,
        password: Secret,
        project: Option<Identity>,
    },
    ApplicationCredential {
        id: Option<String>,
        name: Option<String>,
        user: Option<Identity>,
        secret: Secret,
    },
}

/// A name within a domain, or an id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Identity {
    Id(String),
    Name {
        name: String,
        domain_id: Option<String>,
        domain_name: Option<String>,
    },
}

impl Identity {
    /// The id when set (it needs no domain), else the name within its domain; `None` when neither is.
    fn from_fields(
        id: &Option<String>,
        name: &Option<String>,
        domain_id: &Option<String>,
        domain_name: &Option<String>,
    ) -> Option<Self> {
        match (id, name) {
            (Some(id), _) => Some(Self::Id(id.clone())),
            (None, Some(name)) => Some(Self::Name {
                name: name.clone(),
                domain_id: domain_id.clone(),
                domain_name: domain_name.clone(),
            }),
            (None, None) => None,
        }
    }
}

/// Credentials with everything filled in, ready to authenticate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ResolvedAuth {
    /// Keystone v3 base, ending in `/v3`.
    pub auth_url: String,
    pub method: Method,
    pub region: Option<String>,
    pub interface: String,
    pub cacert: Option<PathBuf>,
    pub insecure: bool,
    /// Where the settings came from, for error messages.
    pub source: String,
}

/// Reads the environment and files; `env` is a lookup so tests need not touch the process environment.
pub(crate) struct Sources<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub clouds_files: Vec<PathBuf>,
}

impl Sources<'_> {
    /// The process environment and openstackclient's search path for `clouds.yaml`.
    pub(crate) fn process() -> Sources<'static> {
        let mut files = Vec::new();
        if let Ok(f) = std::env::var("OS_CLIENT_CONFIG_FILE") {
            files.push(PathBuf::from(f));
        }
        files.push(PathBuf::from("clouds.yaml"));
        if let Some(home) = std::env::var_os("HOME") {
            files.push(Path::new(&home).join(".config/openstack/clouds.yaml"));
        }
        files.push(PathBuf::from("/etc/openstack/clouds.yaml"));
        Sources {
            env: &|k| std::env::var(k).ok().filter(|v| !v.is_empty()),
            clouds_files: files,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct CloudsFile {
    #[serde(default)]
    clouds: BTreeMap<String, CloudEntry>,
}

#[derive(Debug, Default, Deserialize)]
struct CloudEntry {
    #[serde(default)]
    auth: BTreeMap<String, serde_yaml_ng::Value>,
    region_name: Option<String>,
    interface: Option<String>,
    cacert: Option<PathBuf>,
    verify: Option<bool>,
    auth_type: Option<String>,
}

fn yaml_str(v: &serde_yaml_ng::Value) -> Option<String> {
    match v {
        serde_yaml_ng::Value::String(s) => Some(s.clone()),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        serde_yaml_ng::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// One `auth` option for [`AuthConfig::resolve`]: the field and its key, the same in a `clouds.yaml`
/// entry's `auth`; its variable is `OS_` and the key in upper case, as for openstackclient.
type AuthOption<T> = (fn(&mut AuthConfig) -> &mut Option<T>, &'static str);

/// The `auth` options taken as they are from `clouds.yaml` or the `OS_*` variables.
const TEXT_OPTIONS: [AuthOption<String>; 11] = [
    (|a| &mut a.auth_url, "auth_url"),
    (|a| &mut a.username, "username"),
    (|a| &mut a.user_id, "user_id"),
    (|a| &mut a.user_domain_name, "user_domain_name"),
    (|a| &mut a.user_domain_id, "user_domain_id"),
    (|a| &mut a.project_name, "project_name"),
    (|a| &mut a.project_id, "project_id"),
    (|a| &mut a.project_domain_name, "project_domain_name"),
    (|a| &mut a.project_domain_id, "project_domain_id"),
    (
        |a| &mut a.application_credential_id,
        "application_credential_id",
    ),
    (
        |a| &mut a.application_credential_name,
        "application_credential_name",
    ),
];

/// The `auth` secrets taken from `clouds.yaml` or the `OS_*` variables.
const SECRET_OPTIONS: [AuthOption<Secret>; 2] = [
    (|a| &mut a.password, "password"),
    (
        |a| &mut a.application_credential_secret,
        "application_credential_secret",
    ),
];

/// Older names of `OS_*` variables, read when the current one is not set.
const OLD_VARIABLES: [(&str, &str); 3] = [
    ("OS_PROJECT_NAME", "OS_TENANT_NAME"),
    ("OS_PROJECT_ID", "OS_TENANT_ID"),
    ("OS_INTERFACE", "OS_ENDPOINT_TYPE"),
];

/// The `OS_*` variable of an `auth` key.
fn variable(key: &str) -> String {
    format!("OS_{}", key.to_uppercase())
}

impl AuthConfig {
    /// Fills the missing keys from `clouds.yaml` (when a cloud is named) or `OS_*` variables, and checks
    /// that one complete auth method results. Reads files, never the network.
    pub(crate) fn resolve(&self, src: &Sources<'_>) -> Result<ResolvedAuth> {
        let mut a = self.clone();
        let cloud = a.cloud.clone().or_else(|| (src.env)("OS_CLOUD"));
        let source;
        if let Some(cloud) = cloud {
            let (path, entry) = find_cloud(&cloud, &src.clouds_files)?;
            source = format!("clouds.yaml entry {cloud:?} in {}", path.display());
            let get = |k: &str| entry.auth.get(k).and_then(yaml_str);
            for (field, key) in TEXT_OPTIONS {
                fill(field(&mut a), get(key));
            }
            if let Some(d) = get("domain_name") {
                fill(&mut a.user_domain_name, Some(d.clone()));
                fill(&mut a.project_domain_name, Some(d));
            }
            for (field, key) in SECRET_OPTIONS {
                fill(field(&mut a), get(key).map(Secret::new));
            }
            fill(&mut a.region_name, entry.region_name.clone());
            fill(&mut a.interface, entry.interface.clone());
            fill(&mut a.cacert, entry.cacert.clone());
            if a.insecure.is_none() {
                a.insecure = entry.verify.map(|v| !v);
            }
            if let Some(t) = &entry.auth_type
                && t != "password"
                && t != "v3password"
                && t != "v3applicationcredential"
            {
                return Err(Error::config(format!(
                    "{source}: auth_type {t:?} is not supported (password or v3applicationcredential)"
                )));
            }
        } else {
            source = "the config section and OS_* variables".to_owned();
            let env = |var: &str| {
                (src.env)(var).or_else(|| {
                    let (_, old) = OLD_VARIABLES.iter().find(|(new, _)| *new == var)?;
                    (src.env)(old)
                })
            };
            for (field, key) in TEXT_OPTIONS {
                fill(field(&mut a), env(&variable(key)));
            }
            for (field, key) in SECRET_OPTIONS {
                fill(field(&mut a), env(&variable(key)).map(Secret::new));
            }
            fill(&mut a.region_name, env("OS_REGION_NAME"));
            fill(&mut a.interface, env("OS_INTERFACE"));
            fill(&mut a.cacert, env("OS_CACERT").map(PathBuf::from));
            if a.insecure.is_none() {
                a.insecure = env("OS_INSECURE").map(|v| v == "1" || v.eq_ignore_ascii_case("true"));
            }
        }
        a.finish(source)
    }

    fn finish(self, source: String) -> Result<ResolvedAuth> {
        let missing = |what: &str| {
            Error::config(format!(
                "Keystone auth: {what} is missing (looked in {source}); set it in the section's `auth` \
                 table, in clouds.yaml (`cloud = \"name\"` or OS_CLOUD) or as OS_* variables"
            ))
        };
        let auth_url = self.auth_url.clone().ok_or_else(|| missing("auth_url"))?;
        let auth_url = normalise_auth_url(&auth_url).map_err(|e| {
            Error::config(format!("Keystone auth_url {auth_url:?} ({source}): {e}"))
        })?;
        let user = Identity::from_fields(
            &self.user_id,
            &self.username,
            &self.user_domain_id,
            &self.user_domain_name,
        );
        let method = if let Some(secret) = self.application_credential_secret.clone() {
            if self.application_credential_id.is_none()
                && self.application_credential_name.is_none()
            {
                return Err(missing("application_credential_id (or _name)"));
            }
            if self.application_credential_id.is_none() && user.is_none() {
                return Err(missing(
                    "username or user_id (application credential by name)",
                ));
            }
            Method::ApplicationCredential {
                id: self.application_credential_id.clone(),
                name: self.application_credential_name.clone(),
                user,
                secret,
            }
        } else {
            let user = user.ok_or_else(|| missing("username (or an application credential)"))?;
            let password = self.password.clone().ok_or_else(|| missing("password"))?;
            let project = Identity::from_fields(
                &self.project_id,
                &self.project_name,
                &self.project_domain_id,
                &self.project_domain_name,
            );
            Method::Password {
                user,
                password,
                project,
            }
        };
        let interface = self.interface.clone().unwrap_or_else(|| "public".into());
        let interface = interface.trim_end_matches("URL").to_owned();
        if !matches!(interface.as_str(), "public" | "internal" | "admin") {
            return Err(Error::config(format!(
                "Keystone interface {interface:?} ({source}): expected public, internal or admin"
            )));
        }
        Ok(ResolvedAuth {
            auth_url,
            method,
            region: self.region_name.clone(),
            interface,
            cacert: self.cacert.clone(),
            insecure: self.insecure.unwrap_or(false),
            source,
        })
    }
}

fn fill<T>(slot: &mut Option<T>, v: Option<T>) {
    if slot.is_none() {
        *slot = v;
    }
}

fn find_cloud(cloud: &str, files: &[PathBuf]) -> Result<(PathBuf, CloudEntry)> {
    let mut looked = Vec::new();
    for f in files {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(_) => {
                looked.push(f.display().to_string());
                continue;
            }
        };
        let mut parsed: CloudsFile = serde_yaml_ng::from_str(&text)
            .map_err(|e| Error::config(format!("{}: not a valid clouds.yaml: {e}", f.display())))?;
        if let Some(entry) = parsed.clouds.remove(cloud) {
            return Ok((f.clone(), entry));
        }
        looked.push(f.display().to_string());
    }
    Err(Error::config(format!(
        "cloud {cloud:?} not found in clouds.yaml (looked in: {})",
        looked.join(", ")
    )))
}

/// `http://h:5000` → `http://h:5000/v3`; `http://h:5000/v3/` → `http://h:5000/v3`.
fn normalise_auth_url(u: &str) -> std::result::Result<String, String> {
    let parsed = url::Url::parse(u).map_err(|e| e.to_string())?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("expected an http(s) URL".into());
    }
    let trimmed = u.trim_end_matches('/');
    if trimmed.ends_with("/v3") {
        Ok(trimmed.to_owned())
    } else {
        Ok(format!("{trimmed}/v3"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn section_values_win_and_v3_is_appended() {
        let a = AuthConfig {
            auth_url: Some("http://k:5000/".into()),
            username: Some("admin".into()),
            password: Some(Secret::new("pw")),
            project_name: Some("admin".into()),
            user_domain_name: Some("Default".into()),
            ..Default::default()
        };
        let r = a
            .resolve(&Sources {
                env: &no_env,
                clouds_files: vec![],
            })
            .unwrap();
        assert_eq!(r.auth_url, "http://k:5000/v3");
        assert_eq!(r.interface, "public");
        assert!(matches!(r.method, Method::Password { .. }));
    }

    /// An empty `auth` section resolved from these `OS_*` variables (and no clouds.yaml).
    fn from_variables(vars: &[(&str, &str)]) -> ResolvedAuth {
        let env = |k: &str| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        };
        AuthConfig::default()
            .resolve(&Sources {
                env: &env,
                clouds_files: vec![],
            })
            .unwrap()
    }

    #[test]
    fn os_variables_fill_the_gaps_like_openstackclient() {
        let r = from_variables(&[
            ("OS_AUTH_URL", "https://k/identity/v3"),
            ("OS_APPLICATION_CREDENTIAL_ID", "ac1"),
            ("OS_APPLICATION_CREDENTIAL_SECRET", "s3cr3t"),
            ("OS_INTERFACE", "internal"),
            ("OS_REGION_NAME", "RegionTwo"),
        ]);
        assert_eq!(r.auth_url, "https://k/identity/v3");
        assert_eq!(r.interface, "internal");
        assert_eq!(r.region.as_deref(), Some("RegionTwo"));
        assert!(matches!(r.method, Method::ApplicationCredential { .. }));
        assert!(!format!("{r:?}").contains("s3cr3t"));
    }

    #[test]
    fn the_older_os_variable_names_are_read_when_the_current_ones_are_unset() {
        let user = [
            ("OS_AUTH_URL", "https://k/v3"),
            ("OS_USER_ID", "u1"),
            ("OS_PASSWORD", "pw"),
        ];
        let project = |extra: &[(&str, &str)]| {
            let r = from_variables(&[&user[..], extra].concat());
            match r.method {
                Method::Password { project, .. } => (project, r.interface),
                other => panic!("{other:?}"),
            }
        };
        let old_id = Some(Identity::Id("old-id".into()));
        assert_eq!(
            project(&[("OS_TENANT_ID", "old-id"), ("OS_ENDPOINT_TYPE", "admin")]),
            (old_id, "admin".to_owned())
        );
        let new_id = Some(Identity::Id("new-id".into()));
        assert_eq!(
            project(&[("OS_TENANT_ID", "old-id"), ("OS_PROJECT_ID", "new-id")]).0,
            new_id
        );
        let old_name = Some(Identity::Name {
            name: "old".into(),
            domain_id: None,
            domain_name: Some("Default".into()),
        });
        let by_name = [
            ("OS_TENANT_NAME", "old"),
            ("OS_PROJECT_DOMAIN_NAME", "Default"),
        ];
        assert_eq!(project(&by_name).0, old_name);
    }

    #[test]
    fn clouds_yaml_is_read_for_the_named_cloud() {
        let (dir, f) = freezer_dr_core::testing::temp_file(
            "clouds.yaml",
            "clouds:\n  lab:\n    auth:\n      auth_url: http://127.0.0.1:5000/v3\n      username: admin\n      \
             password: hunter2\n      project_name: admin\n      user_domain_name: Default\n      \
             project_domain_name: Default\n    region_name: RegionOne\n    verify: false\n",
        );
        let env = |k: &str| (k == "OS_CLOUD").then(|| "lab".to_owned());
        let r = AuthConfig::default()
            .resolve(&Sources {
                env: &env,
                clouds_files: vec![dir.path().join("missing.yaml"), f.clone()],
            })
            .unwrap();
        assert_eq!(r.region.as_deref(), Some("RegionOne"));
        assert!(r.insecure);
        assert!(r.source.contains("\"lab\""));
        assert!(!format!("{r:?}").contains("hunter2"));
        let e = AuthConfig {
            cloud: Some("nope".into()),
            ..Default::default()
        }
        .resolve(&Sources {
            env: &no_env,
            clouds_files: vec![f],
        })
        .unwrap_err();
        assert!(e.to_string().contains("\"nope\" not found"), "{e}");
    }

    #[test]
    fn missing_pieces_are_named() {
        let e = AuthConfig {
            auth_url: Some("http://k:5000".into()),
            username: Some("admin".into()),
            ..Default::default()
        }
        .resolve(&Sources {
            env: &no_env,
            clouds_files: vec![],
        })
        .unwrap_err();
        assert!(e.to_string().contains("password is missing"), "{e}");
    }

    #[test]
    fn nova_config_rejects_unknown_keys_and_reads_durations() {
        let c: NovaConfig = toml::from_str(
            "heartbeat_timeout = \"15s\"\nmicroversion_cap = \"2.53\"\n[auth]\ncloud = \"lab\"\n",
        )
        .unwrap();
        assert_eq!(c.heartbeat_timeout, Duration::from_secs(15));
        assert_eq!(c.microversion_cap, Microversion::new(2, 53));
        assert!(toml::from_str::<NovaConfig>("heartbeat_timout = \"15s\"").is_err());
    }

    #[test]
    fn heartbeat_window_defaults_to_three_timeouts_and_old_configs_still_parse() {
        // A config written before the key existed.
        let old: NovaConfig = toml::from_str("heartbeat_timeout = \"5s\"\n").unwrap();
        assert_eq!(old.heartbeat_window, None);
        assert_eq!(old.heartbeat_window().unwrap(), Duration::from_secs(15));
        let set: NovaConfig =
            toml::from_str("heartbeat_timeout = \"5s\"\nheartbeat_window = \"20s\"\n").unwrap();
        assert_eq!(set.heartbeat_window().unwrap(), Duration::from_secs(20));
        let short: NovaConfig =
            toml::from_str("heartbeat_timeout = \"5s\"\nheartbeat_window = \"2s\"\n").unwrap();
        let e = short.heartbeat_window().unwrap_err().to_string();
        assert!(
            e.contains("heartbeat_window") && e.contains("leave it out"),
            "names the key and the fix: {e}"
        );
        let e = toml::from_str::<NovaConfig>("heartbeat_window = \"soon\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("heartbeat_window") && e.contains("30s"), "{e}");
    }
}
