//! Recorded documents for the unit tests: ours in `tests/fixtures/console/`, the peers' in `shared/`
//! beside the repository.

use super::datagram;
use super::store::{Limits, Store};
use std::path::PathBuf;

/// Our hand-written client → front-end → back-end traces, one document per line.
pub const THREE_TIER: &str = include_str!("../../tests/fixtures/console/three-tier.jsonl");

/// A peer capture from `../shared/xray/peers/`, or `None` when `shared/` is not beside the repo.
pub fn peer(file: &str) -> Option<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/xray/peers").join(file);
    std::fs::read_to_string(path).ok()
}

/// A roomy store holding `lines` (one document each), sent in the given order.
pub fn store_of<'a>(lines: impl IntoIterator<Item = &'a str>) -> Store {
    let mut store = Store::new(Limits { max_traces: 1000, max_bytes: 1 << 26, max_documents_per_trace: 100 });
    for line in lines.into_iter().filter(|l| !l.trim().is_empty()) {
        let datagram = format!("{{\"format\": \"json\", \"version\": 1}}\n{line}");
        match datagram::parse(datagram.as_bytes()) {
            Ok(received) => {
                store.insert(received);
            }
            Err(e) => panic!("fixture line does not parse: {e}: {line}"),
        }
    }
    store
}
