//! Hand-written OpenAPI fragments for fields whose derived schema would be too loose for
//! admission: quantities (non-negative, well-formed, bounded length for CEL cost and bounded
//! value for exact arithmetic) and RFC 3339 times.

use schemars::{Schema, SchemaGenerator, json_schema};

/// Schema of a time such as `2026-03-01T00:00:00+08:00`: RFC 3339 with an offset and at most
/// nine fractional digits. OpenAPI's `date-time` format alone also lets through forms the
/// operator's time type does not read (no offset, ten fractional digits, any character before
/// the fraction), and one such object would make every object of its kind unreadable to it.
pub fn rfc3339_time(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "format": "date-time",
        "maxLength": 40,
        "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
    })
}

/// Schema of a non-negative Kubernetes quantity: an integer or a string such as `500m`,
/// `64Gi` or `2Ti`. Accepted at admission only when `isQuantity` holds and the sign is not
/// negative, so the message names the field and says what is allowed.
pub fn quantity(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "x-kubernetes-int-or-string": true,
        "x-kubernetes-validations": [{
            "rule": "type(self) == int ? (int(self) >= 0 && int(self) <= 8000000000000000000) : (size(string(self)) <= 32 && isQuantity(string(self)) && !quantity(string(self)).isLessThan(quantity('0')) && !quantity(string(self)).isGreaterThan(quantity('8E')))",
            "message": "must be a non-negative Kubernetes quantity of at most 8E (what the operator computes with exactly), such as 8, 500m, 64Gi or 2Ti"
        }]
    })
}
