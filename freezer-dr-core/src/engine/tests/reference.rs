//! The reference the work index is checked against: `drive` and `next_wakeup` as a full scan of every
//! host and instance (the engine before the index). The bench runs every scenario step through both
//! and compares the commands, the state and the next wake-up.

use super::super::drive::InstanceTurn;
use super::super::work::host_wake;
use super::*;

impl Engine {
    /// [`Engine::drive`] by a full scan.
    pub(in crate::engine) fn drive_by_scan(&mut self, now: Timestamp, out: &mut Vec<Command>) {
        if self.draining {
            return;
        }
        let paused = self.meta.paused.is_some();
        let evac = self.cfg.evacuation.clone();
        let busy: Vec<HostId> = self
            .hosts
            .values()
            .filter(|h| h.stage.under_way())
            .map(|h| h.host.clone())
            .collect();
        let mut active = self.active_by_scan();
        for host in &busy {
            if self.stage_of(host) != Some(&Stage::Evacuating) {
                self.drive_host(now, host, paused, out);
                continue;
            }
            let Some(rec) = self.hosts.get_mut(host) else {
                continue;
            };
            let Some(fenced) = rec.fenced(&self.journal_id) else {
                self.needs_operator(now, host, "evacuating without a fence proof".into(), out);
                continue;
            };
            let turn = InstanceTurn::new(host, &fenced, now, paused, &evac);
            let mut events = Vec::new();
            let mut all_done = true;
            for (id, inst) in rec.instances.iter_mut() {
                let was = inst.state.is_active();
                let slot_free = active < evac.concurrency;
                turn.drive(inst, id, slot_free, &mut events, out);
                match (was, inst.state.is_active()) {
                    (false, true) => active += 1,
                    (true, false) => active -= 1,
                    _ => {}
                }
                all_done &= !inst.inflight && inst.state.is_terminal();
            }
            for (id, what) in events {
                self.touch_instance(now, host, &id, what);
            }
            if all_done {
                self.finish_evacuation(now, host, out);
            }
        }
    }

    fn active_by_scan(&self) -> usize {
        self.hosts
            .values()
            .filter(|h| h.stage == Stage::Evacuating)
            .flat_map(|h| h.instances.values())
            .filter(|i| i.state.is_active())
            .count()
    }

    /// [`Engine::next_wakeup`] by a full scan.
    pub(super) fn next_wakeup_by_scan(&self) -> Option<Timestamp> {
        let evac = &self.cfg.evacuation;
        let paused = self.meta.paused.is_some();
        let slot_free = self.active_by_scan() < evac.concurrency;
        let mut next: Option<Timestamp> = None;
        let mut consider = |t: Timestamp| next = Some(next.map_or(t, |n| n.min(t)));
        for rec in self.hosts.values().filter(|h| h.stage.in_recovery()) {
            if let Some(t) = host_wake(rec, paused, self.cfg.restore_timeout) {
                consider(t);
            }
            if rec.stage == Stage::Evacuating {
                for inst in rec.instances.values().filter(|i| !i.inflight) {
                    match &inst.state {
                        InstanceState::Pending { not_before } if slot_free && !paused => {
                            consider(*not_before);
                        }
                        InstanceState::Rebuilding {
                            since, next_poll, ..
                        } => consider((*next_poll).min(since.after(evac.timeout))),
                        InstanceState::Starting {
                            since, not_before, ..
                        } => {
                            let timeout = since.after(evac.timeout);
                            consider(if paused {
                                timeout
                            } else {
                                (*not_before).min(timeout)
                            });
                        }
                        _ => {}
                    }
                }
            }
        }
        next
    }

    /// [`Engine::is_settled`] by a full scan.
    pub(super) fn is_settled_by_scan(&self) -> bool {
        self.hosts.values().all(|h| !h.stage.under_way())
    }
}

#[test]
fn one_refile_moves_a_host_s_deadline_in_the_index() {
    let mut b = Bench::default();
    assert_eq!(b.down_for_strikes(&["c1"]), ["power_off c1 #0"]);
    b.powered_off("c1", 0, Ok(()));
    assert!(b.power_read("c1", 0, PowerState::On).is_empty());
    let c1 = HostId::from("c1");
    let due = |b: &Bench| -> Vec<Timestamp> {
        b.engine
            .work
            .host_due
            .iter()
            .filter(|(_, h)| *h == c1)
            .map(|(t, _)| *t)
            .collect()
    };
    assert_eq!(
        due(&b),
        [b.now.after(Duration::from_secs(1))],
        "the next read"
    );
    // An earlier deadline (a retry), filed by one refile.
    let sooner = b.now.after(Duration::from_millis(500));
    b.engine.hosts.get_mut(&c1).unwrap().retry_at = Some(sooner);
    b.engine.refile_host(&c1, b.now, false);
    assert_eq!(due(&b), [sooner]);
}

#[test]
#[should_panic(expected = "work index: filed hosts and instances")]
fn check_work_finds_a_host_the_index_no_longer_counts_under_way() {
    // c1's power-off in flight: under way, nothing due, no wake-up of its own.
    let mut b = Bench::default();
    assert_eq!(b.down_for_strikes(&["c1"]), ["power_off c1 #0"]);
    b.engine.check_work();
    let filed = b.engine.work.hosts.get_mut(&HostId::from("c1")).unwrap();
    assert!(filed.under_way);
    filed.under_way = false;
    b.engine.check_work();
}
