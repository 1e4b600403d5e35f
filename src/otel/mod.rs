//! The OpenTelemetry bridge: W3C trace context read and written beside `X-Amzn-Trace-Id`.

pub mod propagation;
pub mod traceparent;
