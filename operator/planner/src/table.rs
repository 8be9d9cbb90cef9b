//! A plain-text rendering of a [`Plan`] for people: summary, per-node utilisation, waves, city
//! budgets, residency findings and the unplaceable list.

use std::fmt::Write;

use crate::explain;
use crate::output::{Algorithm, Plan};

/// At most this many unplaceable systems are listed; the rest are counted.
const UNPLACEABLE_ROWS: usize = 200;

/// Formats Unix seconds as local `YYYY-MM-DD HH:MM`.
pub(crate) fn local_time(t: i64, offset_minutes: i32) -> String {
    let (date, secs) = civil(t, offset_minutes);
    format!("{date} {:02}:{:02}", secs / 3600, secs % 3600 / 60)
}

/// The local date (`YYYY-MM-DD`) of Unix seconds `t` and the seconds since local midnight.
pub(crate) fn civil(t: i64, offset_minutes: i32) -> (String, i64) {
    let local = t.saturating_add(i64::from(offset_minutes) * 60);
    let days = local.div_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (format!("{year:04}-{month:02}-{day:02}"), local.rem_euclid(86_400))
}

impl Plan {
    /// Renders the plan as text tables: a summary line, per-node utilisation, waves, and the
    /// unplaceable systems with their reasons (the first 200).
    pub fn render_table(&self) -> String {
        let mut out = String::new();
        let algorithm = match self.algorithm {
            Algorithm::Constrained => "constrained",
            Algorithm::FirstFit => "first-fit baseline",
        };
        let _ = writeln!(
            out,
            "Plan ({algorithm}) from {}: {} systems, {} placed ({} in flight, {} completed), \
             {} unplaceable, {} not migrated",
            local_time(self.now, self.utc_offset_minutes),
            self.systems,
            self.placed,
            self.in_flight,
            self.completed,
            self.unplaceable.len(),
            self.not_migrated.len()
        );
        let _ = writeln!(out, "Makespan {:.2} h, lower bound {:.2} h\n", self.makespan_hours, self.lower_bound_hours);

        let _ = writeln!(
            out,
            "{:<16} {:<7} {:>10} {:>6} {:>11} {:>6} {:>11} {:>6} {:>8} {:>6}  NAME",
            "NODE", "REGION", "CPU", "CPU%", "MEMORY", "MEM%", "STORAGE", "STO%", "SYSTEMS", "MIGR"
        );
        for n in &self.nodes {
            let _ = writeln!(
                out,
                "{:<16} {:<7} {:>10} {:>6.1} {:>11} {:>6.1} {:>11} {:>6.1} {:>8} {:>6}  {}",
                n.name,
                n.region_code,
                explain::cpu(n.allocated.cpu).trim_end_matches(" cpu"),
                n.utilization.cpu,
                explain::bytes(n.allocated.memory),
                n.utilization.memory,
                explain::bytes(n.allocated.storage),
                n.utilization.storage,
                n.systems,
                n.migrations,
                n.display_name
            );
        }

        if !self.waves.is_empty() {
            let _ = writeln!(
                out,
                "\n{:<20} {:>5} {:>8} {:>8} {:>16} {:>16}",
                "WAVE", "ORDER", "SYSTEMS", "PLACED", "START", "END"
            );
            for w in &self.waves {
                let at = |t: Option<i64>| t.map_or("-".to_owned(), |t| local_time(t, self.utc_offset_minutes));
                let _ = writeln!(
                    out,
                    "{:<20} {:>5} {:>8} {:>8} {:>16} {:>16}",
                    w.name,
                    w.order,
                    w.systems,
                    w.placed,
                    at(w.start),
                    at(w.end)
                );
            }
        }

        if !self.cities.is_empty() {
            let _ = writeln!(
                out,
                "\n{:<18} {:<16} {:>10} {:>10} {:>6} {:>11} {:>11} {:>6}  {:>10} {:>10}",
                "CITY BUDGET",
                "NODE",
                "CPU USED",
                "BUDGET",
                "CPU%",
                "MEM USED",
                "BUDGET",
                "MEM%",
                "BORROWED",
                "LENDABLE"
            );
            for c in &self.cities {
                for (k, share) in c.nodes.iter().enumerate() {
                    let lending = if k == 0 {
                        format!(
                            "{:>10} {:>10}",
                            explain::cpu(c.borrowed.cpu).trim_end_matches(" cpu"),
                            explain::cpu(c.lendable.minus(c.borrowed).cpu).trim_end_matches(" cpu")
                        )
                    } else {
                        String::new()
                    };
                    let _ = writeln!(
                        out,
                        "{:<18} {:<16} {:>10} {:>10} {:>6.1} {:>11} {:>11} {:>6.1}  {lending}",
                        if k == 0 { format!("{} {}", c.region_code, c.display_name) } else { String::new() },
                        share.node,
                        explain::cpu(share.used.cpu).trim_end_matches(" cpu"),
                        explain::cpu(share.budget.cpu).trim_end_matches(" cpu"),
                        share.utilization.cpu,
                        explain::bytes(share.used.memory),
                        explain::bytes(share.budget.memory),
                        share.utilization.memory,
                    );
                }
            }
        }

        for (title, findings) in [
            ("Residency: stranded (on a node a rule now forbids, no waiver)", &self.residency.stranded),
            ("Residency: waived (placed outside a rule under a recorded waiver)", &self.residency.waived),
        ] {
            if findings.is_empty() {
                continue;
            }
            let _ = writeln!(out, "\n{title}: {}", findings.len());
            for f in findings.iter().take(UNPLACEABLE_ROWS) {
                let who = f.granted_by.as_deref().map(|g| format!(", granted by {g}")).unwrap_or_default();
                let _ = writeln!(out, "  {:<18} on {:<16} {:?}  rule {}{who}", f.system_id, f.node, f.phase, f.rule);
            }
        }

        if !self.unplaceable.is_empty() {
            let counts: Vec<String> = self.reasons.iter().map(|(r, c)| format!("{r} {c}")).collect();
            let _ = writeln!(out, "\nUnplaceable ({}): {}", self.unplaceable.len(), counts.join(", "));
            for u in self.unplaceable.iter().take(UNPLACEABLE_ROWS) {
                let _ = writeln!(out, "  {:<18} {:<26} {}", u.system_id, u.reason.as_str(), u.message);
            }
            if self.unplaceable.len() > UNPLACEABLE_ROWS {
                let _ = writeln!(out, "  … and {} more", self.unplaceable.len() - UNPLACEABLE_ROWS);
            }
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::local_time;

    #[test]
    fn local_time_is_civil_time() {
        assert_eq!(local_time(1_740_931_200, 480), "2025-03-03 00:00");
        assert_eq!(local_time(0, 0), "1970-01-01 00:00");
    }
}
