//! Member clusters: a CloudNode may be backed by a city backbone node's own Kubernetes
//! cluster (`spec.cluster`), reached with a kubeconfig from a Secret in the operator's
//! namespace. Work in progress for issue 14: so far the kubeconfig is read and checked.

pub mod kubeconfig;
