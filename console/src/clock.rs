//! The console's clock: epoch seconds, the unit of X-Ray documents, sampling rules and queries.

/// The time now, epoch seconds.
pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}
