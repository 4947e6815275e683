//! Several `[[monitor]]` sections combined, end to end through the config file and the runtime with the
//! `testing` drivers: Nova's heartbeat (`testing`) and a probe of the host itself (`testing` with
//! `probe = true`, as the `tcp` monitor sees it).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers

use std::sync::Arc;

use freezer_dr_core::Runtime;
use freezer_dr_core::config::Config;
use freezer_dr_core::journal::MemoryJournal;
use freezer_dr_core::testing::World;

/// A configuration over the world `world` whose monitors are Nova's view and a probe, combined as
/// `combine` says; `down` died, `service_down` only lost its nova-compute.
fn config(world: &str, combine: &str, down: &str, service_down: &str) -> Config {
    let text = format!(
        r#"
[recovery]
interval = "10ms"
strikes = 2
isolation_settle = "0s"
[recovery.monitors]
combine = "{combine}"

[[monitor]]
type = "testing"
name = "nova"
world = "{world}"
hosts = ["c1", "c2", "c3", "c4", "c5"]
down = [{down}]
service_down = [{service_down}]

[[monitor]]
type = "testing"
name = "probe"
probe = true
world = "{world}"
hosts = ["c1", "c2", "c3", "c4", "c5"]

[[fencer]]
type = "testing"
world = "{world}"

[evacuator]
type = "testing"
world = "{world}"
"#
    );
    Config::parse(&text, std::path::Path::new("combined.toml")).unwrap()
}

async fn run_once(cfg: &Config) -> freezer_dr_core::runtime::Summary {
    let rt = Runtime::new(
        cfg.recovery.clone(),
        cfg.build().unwrap(),
        Arc::new(MemoryJournal::new()),
    );
    rt.run_once().await.unwrap()
}

#[tokio::test]
async fn with_all_a_dead_nova_compute_alone_fences_nothing() {
    let cfg = config("combined-all-service", "all", "", r#""c1""#);
    let summary = run_once(&cfg).await;
    assert!(summary.recovered.is_empty(), "{summary:?}");
    assert_eq!(World::named("combined-all-service").power_offs("c1"), 0);
}

#[tokio::test]
async fn with_all_a_dead_host_is_fenced_and_recovered() {
    let cfg = config("combined-all-host", "all", r#""c1""#, "");
    let summary = run_once(&cfg).await;
    assert_eq!(summary.recovered, ["c1".into()], "{summary:?}");
    let w = World::named("combined-all-host");
    assert_eq!(w.power_offs("c1"), 1);
    assert!(w.violations().is_empty(), "{:?}", w.violations());
}

#[tokio::test]
async fn with_any_a_dead_nova_compute_alone_is_enough_to_fence() {
    let cfg = config("combined-any-service", "any", "", r#""c1""#);
    let summary = run_once(&cfg).await;
    assert_eq!(summary.recovered, ["c1".into()], "{summary:?}");
}

#[tokio::test]
async fn the_combined_observation_keeps_each_monitors_view() {
    let cfg = config("combined-views", "all", "", r#""c2""#);
    let seen = cfg.build().unwrap().monitor.observe().await.unwrap();
    let c2 = seen.iter().find(|h| h.host.as_str() == "c2").unwrap();
    let views: Vec<String> = c2.views.iter().map(ToString::to_string).collect();
    assert_eq!(
        views,
        [
            "nova: down (nova-compute stopped reporting (testing world))",
            "probe: up"
        ]
    );
    assert!(c2.disputed() && !c2.health.is_down(), "{c2:?}");
}
