//! Test certificates made with the `openssl` CLI (Debian `openssl`), for drivers that speak TLS to a
//! real peer (an SMTP server, a Redfish BMC).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA, a server certificate for `localhost` and `127.0.0.1` signed by it, and an unrelated CA (whose
/// trust must not let the connection through), in a temporary directory removed on drop.
#[derive(Debug)]
pub struct TestCerts {
    /// The CA that signed [`TestCerts::cert`] (PEM).
    pub ca: PathBuf,
    /// A CA that signed nothing here (PEM).
    pub other_ca: PathBuf,
    /// The server certificate (PEM).
    pub cert: PathBuf,
    /// The server certificate's private key (PEM, unencrypted).
    pub key: PathBuf,
    _dir: tempfile::TempDir,
}

/// Runs `openssl` with the words of `args` in `dir`; panics with its stderr when it fails (test setup:
/// a test cannot go on).
fn openssl(dir: &Path, args: &str) {
    let out = Command::new("openssl")
        .args(args.split_whitespace())
        .current_dir(dir)
        .output();
    match out {
        Ok(out) => assert!(
            out.status.success(),
            "openssl {args} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!(
            "cannot run openssl ({e}): the openssl CLI (Debian package openssl) makes the test \
             certificates"
        ),
    }
}

impl TestCerts {
    /// Makes fresh certificates (valid two days). Panics when openssl cannot.
    pub fn generate() -> Self {
        let dir = match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(e) => panic!("cannot make a temporary directory for test certificates: {e}"),
        };
        let d = dir.path();
        for ca in ["ca", "other-ca"] {
            openssl(
                d,
                &format!(
                    "req -x509 -newkey rsa:2048 -nodes -days 2 -keyout {ca}.key -out {ca}.pem \
                     -subj /CN=freezer-dr-test-{ca} -addext basicConstraints=critical,CA:TRUE \
                     -addext keyUsage=critical,keyCertSign,cRLSign"
                ),
            );
        }
        openssl(
            d,
            "req -newkey rsa:2048 -nodes -keyout leaf.key -out leaf.csr -subj /CN=localhost",
        );
        if let Err(e) = std::fs::write(
            d.join("leaf.ext"),
            "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        ) {
            panic!("cannot write the test certificate's extensions: {e}");
        }
        openssl(
            d,
            "x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
             -extfile leaf.ext -out leaf.pem",
        );
        Self {
            ca: d.join("ca.pem"),
            other_ca: d.join("other-ca.pem"),
            cert: d.join("leaf.pem"),
            key: d.join("leaf.key"),
            _dir: dir,
        }
    }
}
