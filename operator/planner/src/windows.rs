//! Weekly recurring windows: normalisation, intersection and "next time a cutover fits".
//!
//! A set of windows becomes a sorted list of disjoint intervals in seconds of the local week
//! (`[0, WEEK)`, Monday 00:00 local = 0). A run that ends at the end of the week and one that
//! starts at its beginning are one run across Sunday midnight.

use crate::index::{NONE, Problem};
use crate::model::Window;

/// Seconds in a week.
pub const WEEK: i64 = 7 * DAY;
const DAY: i64 = 86_400;
/// Unix time 0 was a Thursday; local Monday 1970-01-05 00:00 is 4 days later.
const MONDAY_ORIGIN: i64 = 4 * DAY;

/// A weekly window set that constrains time (an unconstrained set is `None` at the call
/// sites); a set with no interval never admits anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeeklySet {
    /// Disjoint, sorted intervals within `[0, WEEK)`.
    intervals: Vec<(i64, i64)>,
    /// The same intervals, the last one extended past `WEEK` when it continues into the first.
    runs: Vec<(i64, i64)>,
    /// Whether the set covers the whole week.
    always: bool,
}

impl WeeklySet {
    /// Builds the set of `windows`; `None` when `windows` is empty (no constraint).
    pub fn from_windows(windows: &[Window]) -> Option<WeeklySet> {
        if windows.is_empty() {
            return None;
        }
        let mut raw = Vec::new();
        for w in windows {
            let duration = i64::from(w.duration_minutes) * 60;
            if duration == 0 {
                continue;
            }
            if duration >= WEEK {
                raw.push((0, WEEK));
                continue;
            }
            let start_of_day = i64::from(w.start_minute % 1440) * 60;
            let days: Vec<i64> = if w.days.is_empty() {
                (0..7).collect()
            } else {
                w.days.iter().filter(|d| **d < 7).map(|d| i64::from(*d)).collect()
            };
            for day in days {
                let start = day * DAY + start_of_day;
                let end = start + duration;
                if end <= WEEK {
                    raw.push((start, end));
                } else {
                    raw.push((start, WEEK));
                    raw.push((0, end - WEEK));
                }
            }
        }
        Some(Self::from_intervals(raw))
    }

    fn from_intervals(mut raw: Vec<(i64, i64)>) -> WeeklySet {
        raw.sort_unstable();
        let mut intervals: Vec<(i64, i64)> = Vec::with_capacity(raw.len());
        for (start, end) in raw {
            match intervals.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => intervals.push((start, end)),
            }
        }
        let always = intervals.len() == 1 && intervals[0] == (0, WEEK);
        let mut runs = intervals.clone();
        if runs.len() > 1 && runs[0].0 == 0 && runs[runs.len() - 1].1 == WEEK {
            let first_end = runs[0].1;
            let last = runs.len() - 1;
            runs[last].1 = WEEK + first_end;
        }
        WeeklySet { intervals, runs, always }
    }

    /// The intersection of two optional sets (`None` = no constraint).
    pub fn intersect(a: Option<&WeeklySet>, b: Option<&WeeklySet>) -> Option<WeeklySet> {
        match (a, b) {
            (None, None) => None,
            (Some(x), None) | (None, Some(x)) => Some(x.clone()),
            (Some(x), Some(y)) => {
                let mut out = Vec::new();
                let (mut i, mut j) = (0, 0);
                while i < x.intervals.len() && j < y.intervals.len() {
                    let (a0, a1) = x.intervals[i];
                    let (b0, b1) = y.intervals[j];
                    let (lo, hi) = (a0.max(b0), a1.min(b1));
                    if lo < hi {
                        out.push((lo, hi));
                    }
                    if a1 < b1 { i += 1 } else { j += 1 }
                }
                Some(Self::from_intervals(out))
            }
        }
    }

    /// The longest stretch of time the set stays open, in seconds (`i64::MAX` when always).
    pub fn longest_run(&self) -> i64 {
        if self.always {
            return i64::MAX;
        }
        self.runs.iter().map(|(a, b)| b - a).max().unwrap_or(0)
    }

    /// The earliest instant `t ≥ at` (Unix seconds) such that `[t, t + duration]` lies inside
    /// the set, reading the set in local time `utc_offset_seconds` east of UTC.
    pub fn next_fit(&self, at: i64, duration: i64, utc_offset_seconds: i64) -> Option<i64> {
        if self.always {
            return Some(at);
        }
        let local = at + utc_offset_seconds;
        let position = (local - MONDAY_ORIGIN).rem_euclid(WEEK);
        let week_start = local - position;
        // Any run recurs weekly, so the current and the next week decide; a third covers a run
        // that starts before `position` and was too short from there.
        for week in 0..3 {
            let shift = week * WEEK;
            for &(start, end) in &self.runs {
                let t = position.max(start + shift);
                if t + duration <= end + shift {
                    return Some(week_start + t - utc_offset_seconds);
                }
            }
        }
        None
    }

    /// Whether `[t, t + duration]` (Unix seconds) lies inside the set.
    #[cfg(test)]
    pub fn contains(&self, t: i64, duration: i64, utc_offset_seconds: i64) -> bool {
        self.next_fit(t, duration, utc_offset_seconds) == Some(t)
    }
}

/// The cutover window set of every (node, wave) pair, precomputed: node maintenance windows
/// ∩ wave windows, `None` when neither constrains.
#[derive(Debug)]
pub(crate) struct WindowTable {
    stride: usize,
    sets: Vec<Option<WeeklySet>>,
    constrained: Vec<bool>,
    cutover: i64,
    offset: i64,
}

impl WindowTable {
    /// Builds the table for every node and every wave (plus "no wave").
    pub fn new(p: &Problem<'_>) -> WindowTable {
        let stride = p.waves.len() + 1;
        let waves: Vec<Option<WeeklySet>> =
            std::iter::once(None).chain(p.waves.iter().map(|w| WeeklySet::from_windows(&w.windows))).collect();
        let mut sets = Vec::with_capacity(p.nodes.len() * stride);
        for node in &p.nodes {
            let own = WeeklySet::from_windows(&node.maintenance_windows);
            for wave in &waves {
                sets.push(WeeklySet::intersect(own.as_ref(), wave.as_ref()));
            }
        }
        let constrained = sets.iter().map(|s| s.as_ref().is_some_and(|s| !s.always)).collect();
        WindowTable {
            stride,
            sets,
            constrained,
            cutover: i64::from(p.settings.cutover_minutes) * 60,
            offset: i64::from(p.settings.utc_offset_minutes) * 60,
        }
    }

    fn set(&self, node: u32, wave: u32) -> Option<&WeeklySet> {
        let column = if wave == NONE { 0 } else { wave as usize + 1 };
        self.sets[node as usize * self.stride + column].as_ref()
    }

    /// Whether a cutover of the configured length fits in some window of (node, wave).
    pub fn cutover_fits(&self, node: u32, wave: u32) -> bool {
        self.set(node, wave).is_none_or(|s| s.longest_run() >= self.cutover)
    }

    /// Whether the windows of (node, wave) constrain cutovers at all.
    pub fn constrained(&self, node: u32, wave: u32) -> bool {
        let column = if wave == NONE { 0 } else { wave as usize + 1 };
        self.constrained[node as usize * self.stride + column]
    }

    /// The longest open stretch of (node, wave), seconds.
    pub fn longest(&self, node: u32, wave: u32) -> i64 {
        self.set(node, wave).map_or(i64::MAX, WeeklySet::longest_run)
    }

    /// The earliest cutover start at or after `at` on (node, wave); `at` when unconstrained.
    pub fn next_cutover(&self, node: u32, wave: u32, at: i64) -> i64 {
        match self.set(node, wave) {
            None => at,
            // Placement only keeps nodes where the cutover fits, so a fit always exists.
            Some(s) => s.next_fit(at, self.cutover, self.offset).unwrap_or(at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CST: i64 = 8 * 3600;
    /// 2025-03-03 00:00 +08:00, a Monday.
    const MONDAY: i64 = 1_740_931_200;

    fn window(days: &[u8], start_minute: u32, duration_minutes: u32) -> Window {
        Window { days: days.to_vec(), start_minute, duration_minutes }
    }

    #[test]
    fn nightly_window_is_found_in_local_time() {
        let set = WeeklySet::from_windows(&[window(&[], 22 * 60, 6 * 60)]).unwrap();
        // Monday 10:00 local: next fit for one hour is Monday 22:00 local.
        let t = set.next_fit(MONDAY + 10 * 3600, 3600, CST).unwrap();
        assert_eq!(t, MONDAY + 22 * 3600);
        // Tuesday 03:30 local is inside Monday's window that runs to 04:00, but one hour does
        // not fit before 04:00, so the next is Tuesday 22:00.
        let t = set.next_fit(MONDAY + DAY + 3 * 3600 + 1800, 3600, CST).unwrap();
        assert_eq!(t, MONDAY + DAY + 22 * 3600);
        assert_eq!(set.longest_run(), 6 * 3600);
    }

    #[test]
    fn windows_across_sunday_midnight_join() {
        // Sunday 23:00 for 3 hours runs into Monday 02:00.
        let set = WeeklySet::from_windows(&[window(&[6], 23 * 60, 180)]).unwrap();
        assert_eq!(set.longest_run(), 3 * 3600);
        let sunday_2330 = MONDAY + 6 * DAY + 23 * 3600 + 1800;
        assert_eq!(set.next_fit(sunday_2330, 2 * 3600, CST), Some(sunday_2330));
        assert!(set.contains(MONDAY, 3600, CST));
        assert!(!set.contains(MONDAY + 3600 + 60, 3600, CST));
    }

    #[test]
    fn intersection_keeps_only_common_time() {
        let nightly = WeeklySet::from_windows(&[window(&[], 0, 6 * 60)]).unwrap();
        let weekend = WeeklySet::from_windows(&[window(&[5, 6], 4 * 60, 10 * 60)]).unwrap();
        let both = WeeklySet::intersect(Some(&nightly), Some(&weekend)).unwrap();
        assert_eq!(both.longest_run(), 2 * 3600);
        let t = both.next_fit(MONDAY, 3600, CST).unwrap();
        assert_eq!(t, MONDAY + 5 * DAY + 4 * 3600);
        assert!(WeeklySet::intersect(None, None).is_none());
    }

    #[test]
    fn too_long_a_cutover_never_fits() {
        let set = WeeklySet::from_windows(&[window(&[2], 60, 30)]).unwrap();
        assert_eq!(set.next_fit(MONDAY, 3600, CST), None);
        let empty = WeeklySet::from_windows(&[window(&[], 0, 0)]).unwrap();
        assert_eq!(empty.longest_run(), 0);
    }
}
