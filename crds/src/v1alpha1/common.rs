//! Types shared by several kinds: resource amounts, weekly windows, security levels and the
//! condition helpers every status uses.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Amounts of the resources Suyun accounts for. Every field is optional; an absent field
/// means zero.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceAmounts {
    /// CPU in cores, as a Kubernetes quantity (`64`, `500m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::quantity")]
    pub cpu: Option<Quantity>,
    /// Memory in bytes, as a Kubernetes quantity (`256Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::quantity")]
    pub memory: Option<Quantity>,
    /// Storage in bytes, as a Kubernetes quantity (`20Ti`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::quantity")]
    pub storage: Option<Quantity>,
    /// GPUs (whole devices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::quantity")]
    pub gpu: Option<Quantity>,
}

/// The resources a node offers or a system needs: cpu, memory and storage are required, gpu is
/// optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// CPU in cores, as a Kubernetes quantity (`64`, `500m`).
    #[schemars(schema_with = "crate::schema::quantity")]
    pub cpu: Quantity,
    /// Memory in bytes, as a Kubernetes quantity (`256Gi`).
    #[schemars(schema_with = "crate::schema::quantity")]
    pub memory: Quantity,
    /// Storage in bytes, as a Kubernetes quantity (`20Ti`).
    #[schemars(schema_with = "crate::schema::quantity")]
    pub storage: Quantity,
    /// GPUs (whole devices); absent means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::quantity")]
    pub gpu: Option<Quantity>,
}

/// Day of the week, in China Standard Time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Weekday {
    /// Days from Monday (0) to Sunday (6).
    pub fn index(self) -> u8 {
        self as u8
    }
}

/// A weekly recurring window in China Standard Time (UTC+08:00, no daylight saving), e.g.
/// Saturdays and Sundays from 22:00 for 8 hours. A window may run past midnight.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    /// Days on which the window opens (Mon, Tue, Wed, Thu, Fri, Sat, Sun).
    #[schemars(length(min = 1, max = 7))]
    #[x_kube(validation = kube::core::Rule::new("self.all(x, self.exists_one(y, y == x))").message("list each day once"))]
    pub days: Vec<Weekday>,
    /// Local opening time, `HH:MM` on a 24-hour clock (China Standard Time).
    #[schemars(length(max = 5))]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^([01][0-9]|2[0-3]):[0-5][0-9]$')").message("start must be a 24-hour time HH:MM, e.g. 22:00"))]
    pub start: String,
    /// How long the window stays open, in minutes (1 to 10080, one week).
    #[schemars(range(min = 1, max = 10080))]
    pub duration_minutes: u32,
}

impl Window {
    /// Minutes after local midnight at which the window opens; `None` when `start` is not
    /// `HH:MM` (admission refuses that, so only hand-built values can hit it).
    pub fn start_minute(&self) -> Option<u32> {
        let (h, m) = self.start.split_once(':')?;
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60).then_some(h * 60 + m)
    }
}

/// CPU architectures of the province's hardware; aarch64 is the 信创 (domestic) platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Architecture {
    /// Intel/AMD 64-bit.
    #[serde(rename = "x86_64")]
    X86_64,
    /// ARM 64-bit (e.g. Kunpeng, Phytium: 信创 hardware).
    #[serde(rename = "aarch64")]
    Aarch64,
}

/// Reasons used in conditions across kinds, PascalCase as Kubernetes expects.
pub mod reasons {
    /// The object was reconciled and is usable.
    pub const RECONCILED: &str = "Reconciled";
}

/// Condition types used across kinds.
pub mod condition_types {
    /// The object is usable.
    pub const READY: &str = "Ready";
    /// The node's utilisation is above the configured threshold.
    pub const CAPACITY_PRESSURE: &str = "CapacityPressure";
}
