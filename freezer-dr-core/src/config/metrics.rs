//! `[metrics]`: the opt-in listener of the metrics and health endpoints (served by a binary that links
//! `freezer-dr-metrics`; core only owns the file format).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The example `listen` value (Prometheus' registry of default ports has 9464 for this kind of exporter).
pub const METRICS_EXAMPLE: &str = "listen = \"127.0.0.1:9464\"";

/// `[metrics]`: off unless `listen` is set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// `IP:port` to serve `/metrics`, `/healthz` and `/readyz` on (no authentication: a loopback
    /// address unless the network in between is trusted). Unset: no listener.
    pub listen: Option<String>,
}

impl MetricsConfig {
    /// The address to listen on, if any (checked when the file was parsed).
    pub fn address(&self) -> Option<SocketAddr> {
        self.listen.as_deref().and_then(|s| s.parse().ok())
    }
}

/// The problems of a `[metrics]` section: (key, what is wrong and how to fix it).
pub(super) fn check_metrics(m: &MetricsConfig) -> Vec<(String, String)> {
    let key = "metrics.listen".to_owned();
    let Some(listen) = &m.listen else {
        return Vec::new();
    };
    match listen.parse::<SocketAddr>() {
        Err(_) => vec![(
            key,
            format!(
                "{listen:?} is not an IP address with a port; write e.g. `{METRICS_EXAMPLE}` (an \
                 address, not a host name: \"[::1]:9464\" for IPv6), or remove the key to serve no metrics"
            ),
        )],
        Ok(a) if a.port() == 0 => vec![(
            key,
            format!("{listen:?} has port 0; choose a port, e.g. `{METRICS_EXAMPLE}`"),
        )],
        Ok(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::Path;

    use crate::config::Config;

    const DRIVERS: &str = "[monitor]\ntype = \"testing\"\n[[fencer]]\ntype = \"testing\"\n[evacuator]\ntype = \"testing\"\n";

    fn parse(metrics: &str) -> crate::Result<Config> {
        Config::parse(
            &format!("{DRIVERS}{metrics}"),
            Path::new("/etc/freezer-dr/freezer-dr.toml"),
        )
    }

    #[test]
    fn metrics_are_off_unless_listen_is_written() {
        assert_eq!(parse("").unwrap().metrics.address(), None);
        assert_eq!(parse("[metrics]\n").unwrap().metrics.address(), None);
        let c = parse("[metrics]\nlisten = \"127.0.0.1:9464\"\n").unwrap();
        assert_eq!(c.metrics.address(), Some("127.0.0.1:9464".parse().unwrap()));
        // Any other address is the operator's choice, written explicitly.
        let c = parse("[metrics]\nlisten = \"0.0.0.0:9464\"\n").unwrap();
        assert_eq!(c.metrics.address(), Some("0.0.0.0:9464".parse().unwrap()));
        let c = parse("[metrics]\nlisten = \"[::1]:9464\"\n").unwrap();
        assert_eq!(c.metrics.address(), Some("[::1]:9464".parse().unwrap()));
    }

    #[test]
    fn a_bad_listen_address_names_file_line_key_and_fix() {
        for (value, says) in [
            ("localhost:9464", "is not an IP address with a port"),
            ("127.0.0.1", "is not an IP address with a port"),
            ("127.0.0.1:0", "has port 0"),
        ] {
            let e = parse(&format!("[metrics]\nlisten = {value:?}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("freezer-dr.toml:8: metrics.listen:"),
                "{value}: {e}"
            );
            assert!(e.contains(says), "{value}: {e}");
            assert!(e.contains("127.0.0.1:9464"), "the fix is shown: {e}");
        }
        let e = parse("[metrics]\nlisen = \"127.0.0.1:9464\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("metrics.lisen"), "{e}");
        assert!(e.contains("listen"), "{e}");
    }
}
