//! A local sampling-rules file: loading never panics, and a loaded file answers for any request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xray_sidecar::xray::sampling::{Sampler, host_wildcard, wildcard};

fuzz_target!(|data: &[u8]| {
    // The last bytes, split on NUL, double as a request to decide and as patterns to match.
    let text = String::from_utf8_lossy(data);
    let mut parts = text.rsplitn(4, '\0');
    let (path, method, host) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    assert!(wildcard("*", host));
    let lower = path.to_ascii_lowercase();
    if !lower.contains(['*', '?']) {
        assert!(wildcard(&lower, path), "a literal pattern matches itself");
    }
    let _ = host_wildcard(&lower, host);
    if let Ok(sampler) = Sampler::from_json(data) {
        let rule = sampler.rule_for(host, method, path).map(str::to_owned);
        assert_eq!(sampler.rule_for(host, method, path).map(str::to_owned), rule);
        let _ = sampler.sample(host, method, path, 1_700_000_000);
    }
});
