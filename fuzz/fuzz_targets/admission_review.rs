//! AdmissionReview → answer, as the webhook runs it on every body it is sent: never a panic; an
//! answer always lets the pod through, for the uid it was asked about; and a patch, when there is
//! one, applies to the pod exactly as it was sent.
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::sync::LazyLock;
use xray_injector::config::InjectConfig;
use xray_injector::review::{self, Verdict};

static CONFIG: LazyLock<InjectConfig> = LazyLock::new(|| InjectConfig::from_env().expect("the defaults parse"));

fuzz_target!(|data: &[u8]| {
    // The first byte says whether the pod's namespace opted in; the rest is the request body.
    let Some((&first, body)) = data.split_first() else { return };
    let Ok((answer, verdict)) = review::answer(body, first & 1 == 1, &CONFIG) else { return };
    let sent: Value = serde_json::from_slice(body).expect("an answered review is JSON");
    let answer: Value = serde_json::from_slice(&answer).expect("the answer is JSON");
    assert_eq!(answer["kind"], "AdmissionReview", "{answer}");
    assert_eq!(answer["response"]["uid"], sent["request"]["uid"], "{answer}");
    assert_eq!(answer["response"]["allowed"], true, "a pod is never refused: {answer}");
    // kube-core writes the patch's bytes as an array of numbers; the API server also takes base64.
    let patch: Option<Vec<u8>> = match &answer["response"]["patch"] {
        Value::Null => None,
        Value::Array(bytes) => {
            Some(bytes.iter().map(|b| u8::try_from(b.as_u64().expect("a byte")).expect("a byte")).collect())
        }
        Value::String(b64) => Some(base64::engine::general_purpose::STANDARD.decode(b64).expect("base64")),
        other => panic!("a patch that is neither bytes nor base64: {other}"),
    };
    assert_eq!(patch.is_some(), verdict == Verdict::Injected, "{answer}");
    if let Some(patch) = patch {
        assert_eq!(answer["response"]["patchType"], "JSONPatch", "{answer}");
        let patch: json_patch::Patch = serde_json::from_slice(&patch).expect("the patch is a JSON Patch");
        let mut pod = sent["request"]["object"].clone();
        json_patch::patch(&mut pod, &patch).expect("the patch applies to the pod as sent");
    }
});
