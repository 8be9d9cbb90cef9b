//! Suyun's status-store contract: what the operator publishes to the status-store etcd and the
//! REST apiserver serves, and how both reach that etcd.
//!
//! ```text
//!   suyun-planner (pure)      suyun-store (this crate: no kube)
//!                               ▲          ▲            ▲
//!                        suyun-crds        │            │
//!                      (kube derive only)  │            │
//!                               ▲          │            │
//!                          suyun-operator ─┘     suyun-apiserver (no Kubernetes client)
//! ```
//!
//! * [`readmodel`]: the records, the key layout and the region scope.
//! * [`Phase`]: the phase of a system's migration, shared by the GovSystem status (which
//!   re-exports it) and the records.
//! * [`etcd`] (feature `etcd`): connecting with TLS, and reading a prefix in pages at one
//!   revision.
//!
//! `tests/tests/layering.rs` checks these layers from `cargo metadata`.

#[cfg(feature = "etcd")]
pub mod etcd;
mod phase;
pub mod readmodel;

pub use phase::Phase;
