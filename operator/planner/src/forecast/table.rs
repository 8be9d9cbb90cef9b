//! A plain-text rendering of a [`Forecast`] for people, in the style of `Plan::render_table`:
//! nodes as `regionCode displayName`, quantities in cores and Gi/Ti, dates as `YYYY-MM-DD` in
//! the input's local time.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{CapacityOutcome, Forecast, ResourceName, Shift, WhatIf, WhatIfResult, label};
use crate::explain;
use crate::model::Resources;
use crate::table::{civil, local_time};

/// At most this many systems are listed per kind of change in a what-if.
const ROWS: usize = 20;

/// Formats Unix seconds as a local date `YYYY-MM-DD`.
fn date(t: i64, offset_minutes: i32) -> String {
    let (date, _) = civil(t, offset_minutes);
    date
}

/// An amount without its resource name, for a column headed by it: `64`, `1.5 Ti`, `2`.
fn short(r: ResourceName, value: u64) -> String {
    match r {
        ResourceName::Cpu => explain::cpu(value).trim_end_matches(" cpu").to_owned(),
        ResourceName::Memory | ResourceName::Storage => explain::bytes(value),
        ResourceName::Gpu => value.to_string(),
    }
}

/// The non-zero components of `r`, human-readable: `12 cpu, 48 Gi memory`; `-` when none.
fn amounts(r: &Resources) -> String {
    let parts: Vec<String> = ResourceName::ALL.into_iter().filter(|k| k.of(r) > 0).map(|k| k.format(k.of(r))).collect();
    if parts.is_empty() { "-".to_owned() } else { parts.join(", ") }
}

fn utc_offset(minutes: i32) -> String {
    let sign = if minutes < 0 { '-' } else { '+' };
    let m = minutes.unsigned_abs();
    if m.is_multiple_of(60) { format!("UTC{sign}{}", m / 60) } else { format!("UTC{sign}{}:{:02}", m / 60, m % 60) }
}

impl Forecast {
    /// Renders the forecast as text: run-out dates per node, the extra capacity for the
    /// deadline, and each what-if.
    pub fn render_table(&self) -> String {
        let mut out = String::new();
        let off = self.utc_offset_minutes;
        let at = |t: Option<i64>| t.map_or("-".to_owned(), |t| date(t, off));
        let mut labels: BTreeMap<&str, String> =
            self.run_out.iter().map(|n| (n.node.as_str(), label(&n.node, &n.region_code, &n.display_name))).collect();
        for w in &self.what_if {
            if let WhatIf::Add(n) = &w.change {
                labels.insert(n.name.as_str(), label(&n.name, &n.region_code, &n.display_name));
            }
        }
        let name = |node: &str| labels.get(node).cloned().unwrap_or_else(|| node.to_owned());

        let _ = writeln!(
            out,
            "Forecast from {} ({}): growth {} %/year (continuous), horizon {} days (to {})",
            date(self.now, off),
            utc_offset(off),
            self.growth_percent_per_year,
            self.horizon_days,
            date(self.horizon_end, off)
        );
        let c = &self.current;
        let _ = writeln!(
            out,
            "Current plan: {} placed, {} unplaceable; makespan {:.2} h (last completion {}), lower bound {:.2} h",
            c.placed,
            c.unplaceable,
            c.makespan_hours,
            at(c.last_completion),
            c.lower_bound_hours
        );
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }

        let _ = writeln!(out, "\nRun-out: the first day usage exceeds allocatable (- = not within the horizon)");
        let _ = writeln!(
            out,
            "  {:<9} {:>12} {:>12} {:>14} {:>11}  CAUSE",
            "RESOURCE", "ALLOCATABLE", "USED NOW", "AT COMPLETION", "RUN-OUT"
        );
        for n in &self.run_out {
            let _ = writeln!(
                out,
                "{} ({}): migrations complete {}",
                name(&n.node),
                n.node,
                date(n.migration_completes, off)
            );
            for r in &n.resources {
                let cause = match (&r.caused_by, r.run_out) {
                    (Some(id), _) => format!("start of {id}"),
                    (None, Some(t)) if t == self.now => "already over".to_owned(),
                    (None, Some(_)) => "growth".to_owned(),
                    (None, None) => String::new(),
                };
                let _ = writeln!(
                    out,
                    "  {:<9} {:>12} {:>12} {:>14} {:>11}  {}",
                    r.resource.as_str(),
                    short(r.resource, r.allocatable),
                    short(r.resource, r.usage_now),
                    short(r.resource, r.usage_at_completion),
                    at(r.run_out),
                    cause
                );
            }
        }

        if let Some(cap) = &self.capacity {
            let refused: usize = cap.not_placeable.values().sum();
            let reasons: Vec<String> = cap.not_placeable.iter().map(|(r, n)| format!("{r} {n}")).collect();
            let _ = writeln!(
                out,
                "\nCapacity for the deadline {}: {} placeable systems; {} not placeable whatever the hardware{}",
                date(cap.deadline, off),
                cap.placeable,
                refused,
                if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join(", ")) }
            );
            let _ = writeln!(out, "{}", cap.message);
            match cap.outcome {
                CapacityOutcome::CapacityCannotMeetDeadline => {
                    let _ = writeln!(
                        out,
                        "With unlimited capacity: last completion {}, makespan {:.2} h, lower bound {:.2} h",
                        at(cap.unlimited_last_completion),
                        cap.unlimited_makespan_hours,
                        cap.lower_bound_hours
                    );
                }
                CapacityOutcome::ExtraCapacity => {
                    for n in &cap.nodes {
                        let _ = writeln!(
                            out,
                            "  {} ({}): +{}{} → {}; {} system(s) admitted; last completion {}",
                            name(&n.node),
                            n.node,
                            amounts(&n.extra),
                            if n.as_machine { " (one more machine)" } else { "" },
                            amounts(&n.capacity_after),
                            n.admitted.len(),
                            at(n.last_completion)
                        );
                        let s = &n.by_architecture;
                        let _ = writeln!(
                            out,
                            "      must be aarch64 (信创): {}; must be x86_64: {}; either: {}",
                            amounts(&s.aarch64),
                            amounts(&s.x86_64),
                            amounts(&s.either)
                        );
                    }
                    let s = &cap.total_by_architecture;
                    let _ = writeln!(
                        out,
                        "Province: +{}; must be aarch64 (信创): {}; must be x86_64: {}; either: {}",
                        amounts(&cap.total_extra),
                        amounts(&s.aarch64),
                        amounts(&s.x86_64),
                        amounts(&s.either)
                    );
                    let _ = writeln!(
                        out,
                        "With the extra: {} system(s) admitted, last completion {} (makespan {:.2} h)",
                        cap.admitted,
                        at(cap.last_completion),
                        cap.makespan_hours
                    );
                }
                CapacityOutcome::AlreadyMet | CapacityOutcome::NotFound => {}
            }
            let _ = writeln!(
                out,
                "{} plan(s) run; {}",
                cap.plans_run,
                if cap.coordinate_wise_minimum {
                    "coordinate-wise minimum: one core, 1 Gi or one gpu less on any node misses the deadline \
                     or leaves a system unplaced"
                } else {
                    "not verified to be a coordinate-wise minimum"
                }
            );
        }

        for w in &self.what_if {
            render_what_if(&mut out, w, off, &name);
        }
        let _ = writeln!(out, "\n{} plan(s) run in all", self.plans_run);
        out
    }
}

fn render_what_if(out: &mut String, w: &WhatIfResult, off: i32, name: &dyn Fn(&str) -> String) {
    let change = match &w.change {
        WhatIf::Add(n) => format!("add {} ({})", name(&n.name), n.name),
        WhatIf::Remove(n) => format!("remove {} ({n})", name(n)),
        WhatIf::Cordon(n) => format!("cordon {} ({n})", name(n)),
    };
    let at = |t: Option<i64>| t.map_or("-".to_owned(), |t| date(t, off));
    let _ = writeln!(
        out,
        "\nWhat if: {change}: makespan {:.2} h → {:.2} h (last completion {} → {}), placed {} → {}",
        w.makespan_hours_before,
        w.makespan_hours_after,
        at(w.last_completion_before),
        at(w.last_completion_after),
        w.placed_before,
        w.placed_after
    );
    let _ = writeln!(
        out,
        "  {} moved, {} later, {} earlier, {} unplaceable, {} placeable",
        w.moved.len(),
        w.later.len(),
        w.earlier.len(),
        w.unplaceable.len(),
        w.placeable.len()
    );
    for warning in &w.warnings {
        let _ = writeln!(out, "  warning: {warning}");
    }
    let more = |out: &mut String, n: usize| {
        if n > ROWS {
            let _ = writeln!(out, "    … and {} more", n - ROWS);
        }
    };
    for m in w.moved.iter().take(ROWS) {
        let _ = writeln!(out, "  moved       {:<18} {} → {}", m.system_id, name(&m.from), name(&m.to));
    }
    more(out, w.moved.len());
    for (kind, list) in [("later", &w.later), ("earlier", &w.earlier)] {
        // The largest shifts first (the JSON lists them by systemId).
        let mut shown: Vec<&Shift> = list.iter().collect();
        shown.sort_by_key(|s| std::cmp::Reverse(s.delay_seconds.saturating_abs()));
        for s in shown.into_iter().take(ROWS) {
            let sign = if s.delay_seconds < 0 { '-' } else { '+' };
            let _ = writeln!(
                out,
                "  {kind:<11} {:<18} {} → {} ({sign}{})",
                s.system_id,
                local_time(s.before, off),
                local_time(s.after, off),
                explain::duration(s.delay_seconds.saturating_abs().min(i64::MAX / 2))
            );
        }
        more(out, list.len());
    }
    for u in w.unplaceable.iter().take(ROWS) {
        let _ = writeln!(out, "  unplaceable {:<18} {:<26} {}", u.system_id, u.reason.as_str(), u.message);
    }
    more(out, w.unplaceable.len());
    for p in w.placeable.iter().take(ROWS) {
        let _ = writeln!(out, "  placeable   {:<18} → {} (was {})", p.system_id, name(&p.node), p.was.as_str());
    }
    more(out, w.placeable.len());
}

#[cfg(test)]
mod tests {
    use super::{date, local_time, utc_offset};

    #[test]
    fn dates_are_local_civil_dates() {
        assert_eq!(date(1_740_931_200, 480), "2025-03-03");
        assert_eq!(date(1_740_931_199, 480), "2025-03-02");
        assert_eq!(date(0, 0), "1970-01-01");
        assert_eq!(local_time(1_740_960_000, 480), "2025-03-03 08:00");
        assert_eq!(date(i64::MAX, 480), date(i64::MAX - 1, 480));
        assert_eq!(utc_offset(480), "UTC+8");
        assert_eq!(utc_offset(-330), "UTC-5:30");
    }
}
