//! `suyun.io/v1alpha1`: the four kinds and the types they share.

mod cloud_node;
mod common;
mod gov_system;
mod migration_wave;
mod tenant;

pub use cloud_node::*;
pub use common::*;
pub use gov_system::*;
pub use migration_wave::*;
pub use tenant::*;
