//! Hand-written OpenAPI fragments for fields whose derived schema would be too loose for
//! admission: quantities (non-negative, well-formed, bounded length for CEL cost) and weekly
//! window times.

use schemars::{Schema, SchemaGenerator, json_schema};

/// Schema of a non-negative Kubernetes quantity: an integer or a string such as `500m`,
/// `64Gi` or `2Ti`. Accepted at admission only when `isQuantity` holds and the sign is not
/// negative, so the message names the field and says what is allowed.
pub fn quantity(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "x-kubernetes-int-or-string": true,
        "x-kubernetes-validations": [{
            "rule": "type(self) == int ? int(self) >= 0 : (size(string(self)) <= 32 && isQuantity(string(self)) && !quantity(string(self)).isLessThan(quantity('0')))",
            "message": "must be a non-negative Kubernetes quantity such as 8, 500m, 64Gi or 2Ti"
        }]
    })
}
