//! The OpenTelemetry bridge: W3C trace context read and written beside `X-Amzn-Trace-Id`, and
//! sampled requests exported as OTLP spans beside (or instead of) X-Ray segments.

pub mod exporter;
pub mod propagation;
pub mod settings;
pub mod span;
pub mod traceparent;
pub mod wire;
