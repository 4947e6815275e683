//! Several monitors combined: a lasting disagreement about a host (one says down, the verdict does not:
//! a dead `nova-compute` on a host that still answers) and a combined monitor whose observation fails are
//! each reported to the operators once per episode: a disagreement once it lasted the strike count and
//! `[recovery.monitors] disagreement_after`, a failing monitor at the strike count.

use super::{Command, Engine};
use crate::{Health, HostHealth, MonitorView, ReportKind, Timestamp};

impl Engine {
    /// Counts the disagreement about `h` (already recorded as the host's health and views).
    pub(super) fn track_dispute(&mut self, now: Timestamp, h: &HostHealth, out: &mut Vec<Command>) {
        let strikes = self.cfg.strikes.max(1);
        let Some(rec) = self.hosts.get(&h.host) else {
            return;
        };
        // A host in recovery is past the monitors' say (its fence is proven by its BMC).
        let disputed =
            h.disputed() && !rec.admin.disabled_by_operator() && !rec.stage.in_recovery();
        if !disputed {
            if rec.disputed > 0 {
                let told = rec.dispute_told;
                if let Some(rec) = self.host_mut(&h.host) {
                    rec.disputed = 0;
                    rec.disputed_since = None;
                    rec.dispute_told = false;
                }
                if told {
                    self.note(
                        now,
                        Some(&h.host),
                        None,
                        format!("the monitors agree again: {}", views(&h.views)),
                    );
                }
            }
            return;
        }
        let n = rec.disputed.saturating_add(1);
        let since = rec.disputed_since.unwrap_or(now);
        let due = !rec.dispute_told
            && n >= strikes
            && now.since(since) >= self.cfg.monitors.disagreement_after;
        if let Some(rec) = self.host_mut(&h.host) {
            rec.disputed = n;
            rec.disputed_since = Some(since);
            rec.dispute_told |= due;
        }
        if !due {
            return;
        }
        let (down, other): (Vec<&MonitorView>, Vec<&MonitorView>) = h
            .views
            .iter()
            .filter(|v| !v.failed)
            .partition(|v| v.health.is_down());
        let names = |vs: &[&MonitorView]| {
            vs.iter()
                .map(|v| v.monitor.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let answering: Vec<&MonitorView> = other
            .iter()
            .copied()
            .filter(|v| v.health == Health::Up)
            .collect();
        let summary = format!(
            "{}: {} down but {} {}: not fenced",
            h.host,
            names(&down),
            if answering.is_empty() {
                names(&other)
            } else {
                names(&answering)
            },
            if answering.is_empty() {
                "cannot tell"
            } else {
                "says it is up"
            },
        );
        self.note(now, Some(&h.host), None, summary.clone());
        let mut r = self.report(
            now,
            ReportKind::MonitorsDisagree,
            Some(h.host.clone()),
            summary,
        );
        r.details.extend(h.views.iter().map(ToString::to_string));
        r.details.push(format!(
            "With combine = \"{}\" the host is fenced only when the monitors agree that it is down. If \
             its nova-compute (or its link to the message queue) died while the host runs, its instances \
             still run too: repair the service, nothing was powered off.",
            self.cfg.monitors.combine.as_str()
        ));
        out.push(Command::Notify(r));
    }

    /// Counts the combined monitors that failed in this observation (their views say so), and reports a
    /// failure that reached the strike count, or ended after it had.
    pub(super) fn track_monitor_failures(
        &mut self,
        now: Timestamp,
        observed: &[HostHealth],
        out: &mut Vec<Command>,
    ) {
        let mut failed = std::collections::BTreeMap::<&str, &MonitorView>::new();
        let mut seen = std::collections::BTreeSet::<&str>::new();
        for v in observed.iter().flat_map(|h| &h.views) {
            seen.insert(&v.monitor);
            if v.failed {
                failed.entry(&v.monitor).or_insert(v);
            }
        }
        let strikes = self.cfg.strikes.max(1);
        let recovered: Vec<(String, u32)> = self
            .meta
            .monitor_failures
            .iter()
            .filter(|(m, _)| seen.contains(m.as_str()) && !failed.contains_key(m.as_str()))
            .map(|(m, n)| (m.clone(), *n))
            .collect();
        for (m, n) in recovered {
            self.meta.monitor_failures.remove(&m);
            self.meta_dirty = true;
            if n >= strikes {
                self.resolved(now, &format!("monitor {m} observes again"), out);
            }
        }
        for (m, v) in failed {
            let n = self.meta.monitor_failures.entry(m.to_owned()).or_insert(0);
            *n = n.saturating_add(1);
            let n = *n;
            self.meta_dirty = true;
            if n != strikes {
                continue;
            }
            let combine = self.cfg.monitors.combine;
            let summary = format!("monitor {m} cannot observe ({n} failures in a row)");
            self.note(now, None, None, summary.clone());
            let mut r = self.report(now, ReportKind::ObservationFailing, None, summary);
            if let Health::Unknown { reason } = &v.health {
                r.details.push(format!("last error: {reason}"));
            }
            r.details.push(match combine {
                crate::Combine::All => format!(
                    "With combine = \"all\" no host is fenced while {m} cannot observe: it is unknown for \
                     every host."
                ),
                _ => format!(
                    "With combine = \"{}\" the other monitors still decide; {m} counts as unknown for \
                     every host.",
                    combine.as_str()
                ),
            });
            out.push(Command::Notify(r));
        }
    }
}

fn views(views: &[MonitorView]) -> String {
    views
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
