//! The main path: one host down is fenced, isolated, evacuated, reported and returned to service.

use super::*;

#[test]
fn one_host_down_is_fully_recovered_and_returned_to_service() {
    let mut b = Bench::default();
    assert!(b.observe(&["c1"]).is_empty(), "strike 1 does nothing");
    b.advance(10);
    assert!(b.observe(&["c1"]).is_empty(), "strike 2 does nothing");
    b.advance(10);
    assert_eq!(b.observe(&["c1"]), ["power_off c1 #0"]);
    assert_eq!(b.powered_off("c1", 0, Ok(())), ["power_status c1 #0"]);
    assert_eq!(b.power_read("c1", 0, PowerState::On), Vec::<String>::new());
    b.advance(1);
    assert_eq!(b.step(Input::Tick), ["power_status c1 #0"]);
    assert_eq!(b.power_read("c1", 0, PowerState::Off), ["isolate c1"]);
    assert_eq!(b.isolated("c1"), ["list c1"]);
    assert_eq!(
        b.listed("c1", vec![instance("a", "c1"), instance("b", "c1")]),
        [
            "notify host_fenced c1",
            "evacuate a from c1",
            "evacuate b from c1"
        ]
    );
    assert!(b.sent("c1", "a", Ok(())).is_empty());
    assert!(b.sent("c1", "b", Ok(())).is_empty());
    b.advance(2);
    assert_eq!(
        b.step(Input::Tick),
        ["progress a on c1", "progress b on c1"]
    );
    assert!(b.done("c1", "a", "c2").is_empty());
    let last = b.raw(read_done("c1", "b", "c3"));
    assert_eq!(
        last.iter().map(render).collect::<Vec<_>>(),
        ["notify recovered c1"]
    );
    let report = notified(&last)[0];
    assert_eq!(report.audience, Audience::OperatorsAndUsers);
    assert_eq!(report.projects(), ["p-a", "p-b"]);
    assert_eq!(
        report.instances[0].outcome,
        Outcome::Evacuated {
            to: "c2".into(),
            status: "ACTIVE".into()
        }
    );
    assert_eq!(b.stage("c1"), Stage::Evacuated);

    // Still dead: nothing. Repaired (heartbeat back, still forced down) for the strike count: restore.
    b.advance(10);
    assert!(b.observe(&["c1"]).is_empty());
    b.advance(10);
    assert_eq!(b.up_for_strikes(), ["restore c1"]);
    assert_eq!(
        b.step(Input::Restored {
            host: "c1".into(),
            result: Ok(())
        }),
        ["notify restored c1"]
    );
    assert_eq!(b.stage("c1"), Stage::Healthy);
    let rec = b.engine.host(&"c1".into()).unwrap();
    assert!(rec.fence.is_none() && rec.recovery.is_none() && rec.instances.is_empty());
    assert!(
        b.engine
            .take_changes()
            .clear_instances
            .contains(&"c1".into())
    );
}
