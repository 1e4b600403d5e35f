//! A trace's documents as `BatchGetTraces` returns them: one entry per segment, each subsegment
//! that was sent on its own (`"type": "subsegment"`) put back under the segment or subsegment it
//! names as its parent, as X-Ray compiles them. The sidecar's outbound calls under a caller's
//! context are such subsegments, and so is what an X-Ray SDK streams out of a large segment: a
//! reader walking a segment's `subsegments` finds the call the next service names as its parent.
//!
//! Documents no subsegment joins are returned as received, byte for byte. A subsegment whose
//! parent is not (yet) here stays an entry of its own rather than being lost. Last come the
//! inferred segments X-Ray adds for the downstreams that sent none of their own (see [`inferred`]).

use serde_json::{Map, Value, json};
use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};

use super::document::{Document, Kind};
use super::store::Trace;

/// How deep a parent is looked for inside a document; the JSON parser's own nesting limit is
/// higher, and no emitter nests calls this deep.
const MAX_DEPTH: usize = 64;

/// The `Segments` of `trace`: `{"Id", "Document"}` for each entry, in the order received, then
/// the inferred ones.
pub fn segments(trace: &Trace) -> Vec<Value> {
    let mut entries = received(trace);
    entries.extend(inferred(trace));
    entries
}

/// The documents received, each subsegment sent on its own inside its parent when that is here.
fn received(trace: &Trace) -> Vec<Value> {
    let verbatim = |i: usize| {
        let d = &trace.documents[i];
        json!({"Id": d.document.id, "Document": d.text})
    };
    let loose: Vec<usize> =
        (0..trace.documents.len()).filter(|&i| trace.documents[i].document.kind == Kind::Subsegment).collect();
    if loose.is_empty() {
        return (0..trace.documents.len()).map(verbatim).collect();
    }
    // Parsed documents, for those that take a subsegment in; `None` once placed inside another.
    let mut parsed: Vec<Option<Value>> = trace.documents.iter().map(|d| serde_json::from_str(&d.text).ok()).collect();
    let mut changed = vec![false; parsed.len()];
    let mut placed = vec![false; parsed.len()];
    let mut pending = loose;
    pending.sort_by(|&a, &b| trace.documents[a].document.start.total_cmp(&trace.documents[b].document.start));
    // A subsegment may name another loose one as its parent: place until nothing moves.
    loop {
        let before = pending.len();
        pending.retain(|&i| {
            let Some(parent) = trace.documents[i].document.parent_id.as_deref() else { return true };
            let Some(sub) = parsed[i].take() else { return true };
            let host = parsed
                .iter_mut()
                .enumerate()
                .filter(|(j, _)| !placed[*j])
                .find_map(|(j, doc)| Some((j, find(doc.as_mut()?, parent, MAX_DEPTH)?)));
            match host {
                Some((j, holder)) => {
                    append(holder, sub);
                    changed[j] = true;
                    placed[i] = true;
                    false
                }
                None => {
                    parsed[i] = Some(sub);
                    true
                }
            }
        });
        if pending.len() == before {
            break;
        }
    }
    (0..trace.documents.len())
        .filter(|&i| !placed[i])
        .map(|i| match (&parsed[i], changed[i]) {
            (Some(doc), true) => json!({"Id": trace.documents[i].document.id, "Document": doc.to_string()}),
            _ => verbatim(i),
        })
        .collect()
}

/// The inferred segments X-Ray adds to a trace (the segment documents guide's "inferred segment
/// for a downstream HTTP call"): one for each call to a downstream (a `remote` or `aws`
/// subsegment) whose callee sent no segment naming it as parent, named and timed after the call,
/// with its HTTP exchange, its AWS facts and its flags, and `"inferred": true`. Its id is derived
/// from the call's, so that every read of the trace gives the same one.
fn inferred(trace: &Trace) -> Vec<Value> {
    let answered: HashSet<&str> = trace
        .documents
        .iter()
        .filter(|d| d.document.kind == Kind::Segment)
        .filter_map(|d| d.document.parent_id.as_deref())
        .collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for d in &trace.documents {
        d.document.walk(&mut |call| {
            let downstream = call.kind == Kind::Subsegment && call.is_remote();
            if downstream && !answered.contains(call.id.as_str()) && seen.insert(call.id.clone()) {
                out.push(inferred_segment(&trace.id, call));
            }
        });
    }
    out
}

/// The inferred segment of the downstream `call` went to.
fn inferred_segment(trace_id: &str, call: &Document) -> Value {
    let mut hasher = DefaultHasher::new();
    ("inferred", &call.id).hash(&mut hasher);
    let id = format!("{:016x}", hasher.finish());
    let mut doc = Map::new();
    doc.insert("id".into(), json!(id));
    doc.insert("name".into(), json!(call.name));
    doc.insert("trace_id".into(), json!(trace_id));
    doc.insert("start_time".into(), json!(call.start));
    match call.end {
        Some(end) => doc.insert("end_time".into(), json!(end)),
        None => doc.insert("in_progress".into(), json!(true)),
    };
    doc.insert("parent_id".into(), json!(call.id));
    if call.namespace.as_deref() == Some("aws") {
        doc.insert("origin".into(), json!(call.downstream_type()));
    }
    for key in ["http", "aws", "error", "throttle", "fault"] {
        if let Some(v) = call.fields.get(key) {
            doc.insert(key.into(), v.clone());
        }
    }
    doc.insert("inferred".into(), json!(true));
    json!({"Id": id, "Document": Value::Object(doc).to_string()})
}

/// The entry of `doc` (itself or a nested subsegment) whose id is `id`.
fn find<'a>(doc: &'a mut Value, id: &str, depth: usize) -> Option<&'a mut Map<String, Value>> {
    let obj = doc.as_object_mut()?;
    if obj.get("id").and_then(Value::as_str) == Some(id) {
        return Some(obj);
    }
    if depth == 0 {
        return None;
    }
    obj.get_mut("subsegments")?.as_array_mut()?.iter_mut().find_map(|s| find(s, id, depth - 1))
}

/// Puts `sub` among `holder`'s subsegments, unless one with its id is there already (the entry
/// the emitter embedded itself wins).
fn append(holder: &mut Map<String, Value>, sub: Value) {
    let subs = holder.entry("subsegments").or_insert_with(|| Value::Array(Vec::new()));
    if !subs.is_array() {
        *subs = Value::Array(Vec::new());
    }
    let Value::Array(subs) = subs else { return };
    let id = sub.get("id").cloned();
    if !subs.iter().any(|s| s.get("id") == id.as_ref()) {
        subs.push(sub);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testdata::store_of;
    use super::*;

    const TRACE: &str = "1-5759e988-bd862e3fe1be46a994272793";

    fn documents(lines: &[&str]) -> Vec<Value> {
        let store = store_of(lines.iter().copied());
        let trace = store.get(TRACE).expect("trace");
        segments(trace)
            .into_iter()
            .map(|e| {
                let doc: Value = serde_json::from_str(e["Document"].as_str().expect("text")).expect("json");
                assert_eq!(e["Id"], doc["id"]);
                doc
            })
            .collect()
    }

    const FRONT: &str = r#"{"name":"front-end","id":"70de5b6f19ff9a0a","trace_id":"1-5759e988-bd862e3fe1be46a994272793","start_time":1.0,"end_time":2.0,"subsegments":[{"name":"work","id":"0000000000000001","start_time":1.1,"end_time":1.9}]}"#;
    const CALL: &str = r#"{"name":"back-end","id":"0000000000000002","trace_id":"1-5759e988-bd862e3fe1be46a994272793","type":"subsegment","parent_id":"70de5b6f19ff9a0a","namespace":"remote","start_time":1.2,"end_time":1.8}"#;
    const NESTED: &str = r#"{"name":"db","id":"0000000000000003","trace_id":"1-5759e988-bd862e3fe1be46a994272793","type":"subsegment","parent_id":"0000000000000001","start_time":1.3,"end_time":1.4}"#;
    const BACK: &str = r#"{"name":"back-end","id":"7a1b2c3d4e5f6071","trace_id":"1-5759e988-bd862e3fe1be46a994272793","parent_id":"0000000000000002","start_time":1.25,"end_time":1.75}"#;

    #[test]
    fn subsegments_sent_alone_are_put_back_under_their_parents() {
        let docs = documents(&[FRONT, CALL, NESTED, BACK]);
        assert_eq!(docs.len(), 2, "{docs:?}");
        let front = &docs[0];
        let subs = front["subsegments"].as_array().expect("subsegments");
        assert_eq!(
            subs.iter().map(|s| s["id"].as_str().expect("id")).collect::<Vec<_>>(),
            ["0000000000000001", "0000000000000002"]
        );
        assert_eq!(subs[0]["subsegments"][0]["id"], "0000000000000003", "nested under the entry it names");
        // The next service's parent is found inside the caller's segment.
        assert_eq!(docs[1]["parent_id"], subs[1]["id"]);
    }

    #[test]
    fn the_order_of_arrival_does_not_matter() {
        // The nested one names the call's own id, which arrives after it.
        let child = CALL.replace("\"0000000000000002\"", "\"0000000000000009\"");
        let grandchild = NESTED.replace("\"0000000000000001\"", "\"0000000000000009\"");
        let docs = documents(&[&grandchild, &child, FRONT]);
        assert_eq!(docs.len(), 2, "the call's downstream sent nothing: inferred: {docs:?}");
        assert_eq!(docs[0]["subsegments"][1]["subsegments"][0]["id"], "0000000000000003");
    }

    #[test]
    fn untouched_documents_stay_byte_for_byte_and_orphans_stay_entries() {
        let store = store_of([BACK, NESTED]);
        let entries = segments(store.get(TRACE).expect("trace"));
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0]["Document"], BACK);
        assert_eq!(entries[1]["Document"], NESTED, "its parent never came: kept, not lost");
    }

    #[test]
    fn an_embedded_entry_with_the_same_id_wins() {
        let again =
            CALL.replace("\"0000000000000002\"", "\"0000000000000001\"").replace(r#""namespace":"remote","#, "");
        let docs = documents(&[FRONT, &again]);
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0]["subsegments"].as_array().map(Vec::len), Some(1));
        assert_eq!(docs[0]["subsegments"][0]["name"], "work");
    }

    #[test]
    fn a_downstream_that_sent_nothing_gets_an_inferred_segment() {
        let call = r#"{"name":"names.example.com","id":"0000000000000005","trace_id":"1-5759e988-bd862e3fe1be46a994272793","type":"subsegment","parent_id":"70de5b6f19ff9a0a","namespace":"remote","start_time":1.3,"end_time":1.5,"fault":true,"http":{"request":{"method":"GET","url":"https://names.example.com/"},"response":{"status":503}}}"#;
        let table = r#"{"name":"DynamoDB","id":"0000000000000006","trace_id":"1-5759e988-bd862e3fe1be46a994272793","type":"subsegment","parent_id":"70de5b6f19ff9a0a","namespace":"aws","start_time":1.6,"end_time":1.7,"aws":{"operation":"GetItem","table_name":"orders"}}"#;
        let docs = documents(&[FRONT, CALL, BACK, call, table]);
        // The front-end (holding the three calls) and the back-end, then one inferred segment for
        // each call whose downstream sent none: not for the back-end, which did.
        assert_eq!(docs.len(), 4, "{docs:?}");
        let (names, dynamo) = (&docs[2], &docs[3]);
        assert_eq!(
            (&names["name"], &names["parent_id"], &names["inferred"]),
            (&"names.example.com".into(), &"0000000000000005".into(), &true.into())
        );
        assert_eq!((&names["start_time"], &names["end_time"]), (&1.3.into(), &1.5.into()));
        assert_eq!((&names["http"]["response"]["status"], &names["fault"]), (&503.into(), &true.into()));
        assert_eq!(names["trace_id"], TRACE);
        assert_eq!(names["id"].as_str().map(str::len), Some(16));
        assert_eq!((&dynamo["origin"], &dynamo["aws"]["table_name"]), (&"AWS::DynamoDB".into(), &"orders".into()));
        // The same ids on every read.
        assert_eq!(documents(&[FRONT, CALL, BACK, call, table])[2]["id"], names["id"]);
    }
}
