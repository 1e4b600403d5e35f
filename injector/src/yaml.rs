//! Kubernetes manifests as YAML: several documents per file, `kind: List` unpacked.

use serde::Deserialize;
use serde_json::Value;

/// Every document in `text`, as JSON values (empty documents dropped).
pub fn parse(text: &str) -> Result<Vec<Value>, serde_norway::Error> {
    let mut docs = Vec::new();
    for de in serde_norway::Deserializer::from_str(text) {
        let v = Value::deserialize(de)?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

/// The documents as one YAML stream.
pub fn render(docs: &[Value]) -> Result<String, serde_norway::Error> {
    let mut out = String::new();
    for (i, d) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_norway::to_string(d)?);
    }
    Ok(out)
}
