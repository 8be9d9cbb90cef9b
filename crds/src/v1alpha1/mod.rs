//! `suyun.io/v1alpha1`: the six kinds and the types they share.

mod city_budget;
mod cloud_node;
mod common;
mod gov_system;
mod migration_wave;
mod residency_policy;
mod tenant;

pub use city_budget::*;
pub use cloud_node::*;
pub use common::*;
pub use gov_system::*;
pub use migration_wave::*;
pub use residency_policy::*;
pub use tenant::*;
