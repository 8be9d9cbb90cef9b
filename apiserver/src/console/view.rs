//! What the templates show, formatted: times in China Standard Time, amounts in the units
//! operators read, utilisation as bars drawn in SVG on the server.

use jiff::tz::{Offset, TimeZone};
use suyun_store::readmodel::{ResourceAmounts, SystemRecord};

use super::i18n::{self, Lang, Texts};

/// China Standard Time: UTC+8 all year (no daylight saving), so no time zone database is
/// needed.
fn china() -> TimeZone {
    TimeZone::fixed(Offset::constant(8))
}

/// An RFC 3339 time as `2026-11-30 14:05` in China Standard Time; the text itself when it
/// does not parse, and `—` when there is none.
pub fn time(value: Option<&str>) -> String {
    match value {
        None => "—".to_owned(),
        Some(text) => match text.parse::<jiff::Timestamp>() {
            Ok(t) => t.to_zoned(china()).strftime("%Y-%m-%d %H:%M").to_string(),
            Err(_) => text.to_owned(),
        },
    }
}

/// Now minus `seconds`, as `2026-11-30 14:05:09` in China Standard Time.
pub fn seconds_ago(seconds: u64) -> String {
    let then = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(i64::try_from(seconds).unwrap_or(0));
    then.to_zoned(china()).strftime("%Y-%m-%d %H:%M:%S").to_string()
}

/// One utilisation bar.
#[derive(Debug, Clone)]
pub struct Bar {
    /// What it measures (`CPU`).
    pub label: &'static str,
    /// Width of the filled part, 0–100 (the SVG's `viewBox` is 100 wide).
    pub width: String,
    /// `ok`, `high` (75 % or more) or `full` (90 % or more): the colour.
    pub level: &'static str,
    /// The text beside it: `42.0 %  (84 / 200 cores)`.
    pub text: String,
}

impl Bar {
    fn new(label: &'static str, used: f64, total: f64, unit: &str) -> Bar {
        let percent = if total > 0.0 { used * 100.0 / total } else { 0.0 };
        let level = if percent >= 90.0 {
            "full"
        } else if percent >= 75.0 {
            "high"
        } else {
            "ok"
        };
        Bar {
            label,
            width: format!("{:.1}", percent.clamp(0.0, 100.0)),
            level,
            text: format!("{percent:.1} % ({} / {} {unit})", amount(used), amount(total)),
        }
    }
}

/// A number without trailing zeros: `12`, `12.5`.
fn amount(value: f64) -> String {
    let text = format!("{value:.1}");
    text.strip_suffix(".0").map(str::to_owned).unwrap_or(text)
}

const GIB: f64 = (1u64 << 30) as f64;
const TIB: f64 = (1u64 << 40) as f64;

/// The bars of allocated against allocatable: CPU, memory, storage, and GPU when there are any.
pub fn bars(t: &Texts, allocated: &ResourceAmounts, allocatable: &ResourceAmounts) -> Vec<Bar> {
    let mut bars = vec![
        Bar::new(t.cpu, allocated.cpu_millis as f64 / 1000.0, allocatable.cpu_millis as f64 / 1000.0, "cores"),
        Bar::new(t.memory, allocated.memory_bytes as f64 / GIB, allocatable.memory_bytes as f64 / GIB, "GiB"),
        Bar::new(t.storage, allocated.storage_bytes as f64 / TIB, allocatable.storage_bytes as f64 / TIB, "TiB"),
    ];
    if allocatable.gpu > 0 {
        bars.push(Bar::new(t.gpu, allocated.gpu as f64, allocatable.gpu as f64, "GPU"));
    }
    bars
}

/// A bar of `done` out of `total` (a wave's progress).
pub fn progress(label: &'static str, done: u64, total: u64) -> Bar {
    let mut bar = Bar::new(label, done as f64, total as f64, "");
    bar.level = "ok";
    bar.text = format!("{done} / {total}");
    bar
}

/// One row of the system list.
#[derive(Debug, Clone)]
pub struct SystemRow {
    /// `systemId`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Phase code (for the CSS class) and its name.
    pub phase: String,
    /// The phase's name in the page's language.
    pub phase_label: String,
    /// Tenant.
    pub tenant: String,
    /// Wave, `—` when none.
    pub wave: String,
    /// Node, `—` when not placed.
    pub node: String,
    /// Planned start (China Standard Time).
    pub planned_start: String,
}

impl SystemRow {
    /// The row of `system`.
    pub fn of(lang: Lang, system: &SystemRecord) -> SystemRow {
        SystemRow {
            id: system.system_id.clone(),
            name: if system.display_name.is_empty() { system.name.clone() } else { system.display_name.clone() },
            phase: system.phase.clone(),
            phase_label: i18n::phase(lang, &system.phase),
            tenant: system.tenant.clone(),
            wave: system.wave.clone().unwrap_or_else(|| "—".to_owned()),
            node: system.node.clone().unwrap_or_else(|| "—".to_owned()),
            planned_start: time(system.planned_start.as_deref()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_china_standard_time() {
        assert_eq!(time(Some("2026-11-30T06:05:00Z")), "2026-11-30 14:05");
        assert_eq!(time(Some("2026-11-30T23:30:00Z")), "2026-12-01 07:30");
        assert_eq!(time(None), "—");
        assert_eq!(time(Some("soon")), "soon");
    }

    #[test]
    fn bars_measure_and_colour() {
        let t = Lang::Zh.texts();
        let allocatable =
            ResourceAmounts { cpu_millis: 200_000, memory_bytes: 1 << 40, storage_bytes: 1 << 42, gpu: 0 };
        let allocated = ResourceAmounts { cpu_millis: 190_000, memory_bytes: 1 << 39, storage_bytes: 0, gpu: 0 };
        let bars = bars(t, &allocated, &allocatable);
        assert_eq!(bars.len(), 3, "no GPU bar without GPUs");
        assert_eq!((bars[0].width.as_str(), bars[0].level), ("95.0", "full"));
        assert_eq!(bars[0].text, "95.0 % (190 / 200 cores)");
        assert_eq!((bars[1].width.as_str(), bars[1].level), ("50.0", "ok"));
        let empty = bars_of_nothing(t);
        assert_eq!(empty[0].width, "0.0");
    }

    fn bars_of_nothing(t: &Texts) -> Vec<Bar> {
        bars(t, &ResourceAmounts::default(), &ResourceAmounts::default())
    }
}
