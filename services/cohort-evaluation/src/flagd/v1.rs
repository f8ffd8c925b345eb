//! `flagd.evaluation.v1.Service`. Version 1 has no field presence: a value or variant not
//! served is its zero value, which the wire leaves out (as flagd answers a code default).

super::wire::service!(v1, or_zero);

/// No value on the wire: the zero value, which proto3 does not encode.
fn or_zero<T: Default>(v: Option<T>) -> T {
    v.unwrap_or_default()
}
