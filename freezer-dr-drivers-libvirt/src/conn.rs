//! One libvirt connection per fencer (per URI), opened on first use, checked before each use and opened
//! afresh when the daemon went away; credentials handed to libvirt's auth callback.

use std::cell::RefCell;
use std::sync::{Mutex, Once, PoisonError};

use freezer_dr_core::Secret;
use virt::connect::{Connect, ConnectAuth, ConnectCredential, ConnectCredentialType};
use virt::error::{ErrorNumber, clear_error_callback};

/// libvirt prints every error to stderr itself unless told not to; ours go through our own errors.
pub(crate) fn silence_libvirt_stderr() {
    static ONCE: Once = Once::new();
    ONCE.call_once(clear_error_callback);
}

/// Credentials for libvirt's auth callback.
#[derive(Clone, Debug)]
pub(crate) struct Credentials {
    pub(crate) username: Option<String>,
    pub(crate) password: Option<Secret>,
}

thread_local! {
    // `virt`'s auth callback is a plain `fn` without user data, and libvirt calls it on the thread that
    // opens the connection, during the open: the credentials live here for exactly that call.
    static AUTH: RefCell<Option<Credentials>> = const { RefCell::new(None) };
}

// The signature is `virt`'s `ConnectAuthCallback`.
#[allow(clippy::ptr_arg)]
fn auth_callback(creds: &mut Vec<ConnectCredential>) {
    AUTH.with(|auth| {
        let auth = auth.borrow();
        let Some(auth) = auth.as_ref() else { return };
        for c in creds.iter_mut() {
            c.result = match c.typed {
                ConnectCredentialType::UserName | ConnectCredentialType::AuthName => auth
                    .username
                    .clone()
                    .or_else(|| Some(c.def_result.clone()).filter(|d| !d.is_empty())),
                ConnectCredentialType::Passphrase | ConnectCredentialType::NoEchoPrompt => {
                    auth.password.as_ref().map(|p| p.expose().to_owned())
                }
                // Realm, language, nonce, echo prompts: libvirt's default (if any).
                _ => Some(c.def_result.clone()).filter(|d| !d.is_empty()),
            };
        }
    });
}

/// Clears the thread's credentials when the open returns, however it returns.
struct AuthScope;

impl AuthScope {
    fn set(creds: Credentials) -> Self {
        AUTH.with(|a| *a.borrow_mut() = Some(creds));
        Self
    }
}

impl Drop for AuthScope {
    fn drop(&mut self) {
        AUTH.with(|a| *a.borrow_mut() = None);
    }
}

/// Opens a connection, through the auth callback when credentials are configured.
fn open(uri: &str, creds: &Credentials) -> Result<Connect, virt::error::Error> {
    if creds.username.is_none() && creds.password.is_none() {
        return Connect::open(Some(uri));
    }
    let _scope = AuthScope::set(creds.clone());
    let mut auth = ConnectAuth::new(
        vec![
            ConnectCredentialType::UserName,
            ConnectCredentialType::AuthName,
            ConnectCredentialType::Passphrase,
            ConnectCredentialType::NoEchoPrompt,
            ConnectCredentialType::EchoPrompt,
            ConnectCredentialType::Realm,
        ],
        auth_callback,
    );
    Connect::open_auth(Some(uri), &mut auth, 0)
}

/// True if the error says the connection itself is unusable (closed socket, daemon gone), as opposed to
/// an error about the thing asked for.
pub(crate) fn is_connection_error(e: &virt::error::Error) -> bool {
    e.code().is_any(vec![
        ErrorNumber::SystemError,
        ErrorNumber::Rpc,
        ErrorNumber::NoConnect,
        ErrorNumber::InvalidConn,
    ])
}

/// The fencer's connection to its URI.
pub(crate) struct Slot {
    uri: String,
    creds: Credentials,
    conn: Mutex<Option<Connect>>,
}

impl Slot {
    pub(crate) fn new(uri: String, creds: Credentials) -> Self {
        Self {
            uri,
            creds,
            conn: Mutex::new(None),
        }
    }

    fn cached(&self) -> Option<Connect> {
        self.conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn store(&self, conn: Option<Connect>) {
        let old = std::mem::replace(
            &mut *self.conn.lock().unwrap_or_else(PoisonError::into_inner),
            conn,
        );
        // Closing a remote connection is a round trip: never under the lock.
        drop(old);
    }

    /// Forgets the cached connection (after a timeout or a connection error), so the next call opens a
    /// new one.
    pub(crate) fn forget(&self) {
        self.store(None);
    }

    /// A live connection: the cached one if it still answers, else a new one. Blocking.
    ///
    /// Without a libvirt event loop the client only notices a closed socket when it uses it, so a cached
    /// connection is probed with a cheap call first; the operation itself is never repeated.
    pub(crate) fn get(&self) -> Result<Connect, virt::error::Error> {
        if let Some(conn) = self.cached() {
            match conn.is_alive() {
                Ok(true) => match conn.lib_version() {
                    Ok(_) => return Ok(conn),
                    Err(e) if is_connection_error(&e) => {
                        tracing::info!(uri = %crate::config::redact_uri(&self.uri), error = %e,
                            "libvirt connection lost; reconnecting");
                    }
                    Err(e) => return Err(e),
                },
                _ => {
                    tracing::info!(uri = %crate::config::redact_uri(&self.uri),
                        "libvirt connection closed; reconnecting");
                }
            }
            self.forget();
        }
        let conn = open(&self.uri, &self.creds)?;
        self.store(Some(conn.clone()));
        Ok(conn)
    }
}
