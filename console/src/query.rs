//! Decodes a URL query string (`a=1&b=x%20y`) into name/value pairs.

/// The decoded pairs, in order; a name without `=` gets an empty value.
pub fn pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            (decode(name), decode(value))
        })
        .collect()
}

/// Percent-decodes, with `+` as a space; invalid escapes are kept as written.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pairs() {
        let got = pairs("status=5xx&url=%2Fapi%3Fx&client_ip=10.0.3.1&service=back+end&flag&bad=%zz%4");
        let want = [
            ("status", "5xx"),
            ("url", "/api?x"),
            ("client_ip", "10.0.3.1"),
            ("service", "back end"),
            ("flag", ""),
            ("bad", "%zz%4"),
        ];
        let want: Vec<(String, String)> = want.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        assert_eq!(got, want);
        assert_eq!(pairs("x=%C3%A9%FF"), [("x".to_string(), "é\u{fffd}".to_string())]);
    }
}
