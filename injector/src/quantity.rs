//! Kubernetes resource quantities (`128Mi`, `1Gi`, `500M`, `250m`, `1e9`), read as the API server
//! reads them, so that the injector can check a pod's own figures for its proxy and size what the
//! proxy may hold (connections, worker threads) from the limits it gives it.

/// The amount a quantity stands for (bytes of memory, cores of CPU); `None` for what the API
/// server would refuse (a sign, an unknown suffix, no digits).
pub fn value(quantity: &str) -> Option<f64> {
    let digits = quantity.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(quantity.len());
    let (number, suffix) = quantity.split_at(digits);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return None;
    }
    let number: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        exponent => {
            let power = exponent.strip_prefix(['e', 'E'])?;
            let digits = power.strip_prefix(['+', '-']).unwrap_or(power);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            10f64.powi(power.parse().ok()?)
        }
    };
    Some(number * scale).filter(|v| v.is_finite())
}

/// The number of bytes a memory quantity stands for, rounded down; `None` for what is no quantity
/// and for less than a byte.
pub fn bytes(quantity: &str) -> Option<u64> {
    let bytes = value(quantity)?.floor();
    (bytes >= 1.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// `bytes` in whole MiB, rounded down.
pub fn mebibytes(quantity: &str) -> Option<u64> {
    bytes(quantity).map(|b| b / (1024 * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_forms_the_api_server_accepts() {
        assert_eq!(bytes("128Mi"), Some(128 << 20));
        assert_eq!(bytes("1Gi"), Some(1 << 30));
        assert_eq!(bytes("0.5Gi"), Some(512 << 20));
        assert_eq!(bytes("500M"), Some(500_000_000));
        assert_eq!(bytes("134217728"), Some(134_217_728));
        assert_eq!(bytes("1e9"), Some(1_000_000_000));
        assert_eq!(bytes("2E6"), Some(2_000_000));
        assert_eq!(bytes("64k"), Some(64_000));
        assert_eq!(bytes("1.5Ki"), Some(1536));
        assert_eq!(mebibytes("256Mi"), Some(256));
        assert_eq!(mebibytes("1G"), Some(953));
        assert_eq!(value("500m"), Some(0.5));
        assert_eq!(value("2"), Some(2.0));
    }

    #[test]
    fn refuses_what_is_no_memory_limit() {
        for bad in ["", "Mi", "-128Mi", "+1Gi", "128MB", "128 Mi", "1..2Gi", ".", "0", "0Mi", "1e", "1e+", "5m", "1mi"]
        {
            assert_eq!(bytes(bad), None, "{bad:?}");
        }
    }
}
