//! `flagd.evaluation.v2.Service`. Version 2 has field presence: a value or variant not served
//! is left out, and providers can tell.

super::wire::service!(v2, std::convert::identity);
