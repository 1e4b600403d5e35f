//! AdmissionReview transport: parse what the API server sent, run the pure mutation, answer.
//! A body that is not an AdmissionReview is a 400; a review whose pod cannot be read is allowed
//! unchanged with a warning, because tracing must never block a workload.

use kube_core::DynamicObject;
use kube_core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, ConvertAdmissionReviewError};
use serde_json::Value;

use crate::config::InjectConfig;
use crate::mutate::{self, Context, Outcome};

/// What happened to one review, for metrics and logs.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The sidecar was added.
    Injected,
    /// Left alone for this reason (a metric label).
    Skipped(&'static str),
    /// The pod could not be read or patched; allowed unchanged.
    Error,
}

/// Why a body gets a 400 instead of an answer.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The body is not JSON.
    #[error("not an admission.k8s.io/v1 AdmissionReview: {0}")]
    NotJson(#[source] serde_json::Error),
    /// JSON, but not a review with a request to answer.
    #[error("not an admission.k8s.io/v1 AdmissionReview with a request and its uid")]
    NoRequest,
    /// The answer could not be written.
    #[error("cannot encode the response: {0}")]
    Encode(#[source] serde_json::Error),
}

/// Why a review's request cannot be read, though it has a uid to answer.
#[derive(Debug, thiserror::Error)]
enum Unreadable {
    /// It does not have the shape of a review.
    #[error("{0}")]
    Shape(#[source] serde_json::Error),
    /// It has the shape but not a request.
    #[error("{0}")]
    Request(#[source] ConvertAdmissionReviewError),
}

/// Answers one AdmissionReview body: the response body, or the reason it is a bad request.
pub fn answer(body: &[u8], namespace_opted_in: bool, cfg: &InjectConfig) -> Result<(Vec<u8>, Verdict), ReviewError> {
    // The patch must be computed against the pod exactly as sent, unknown fields included, so the
    // object is taken from the raw JSON rather than from the typed request.
    let raw: Value = serde_json::from_slice(body).map_err(ReviewError::NotJson)?;
    let uid = match (raw["kind"].as_str(), raw.pointer("/request/uid").and_then(Value::as_str)) {
        (Some("AdmissionReview"), Some(uid)) => uid.to_owned(),
        _ => return Err(ReviewError::NoRequest),
    };
    // The API server always says who asks; a review made by hand may not, and the answer does not
    // depend on it.
    let mut typed = raw.clone();
    if let Some(request) = typed.get_mut("request").and_then(Value::as_object_mut) {
        request.entry("userInfo").or_insert_with(|| serde_json::json!({}));
    }
    let request: AdmissionRequest<DynamicObject> = match serde_json::from_value::<AdmissionReview<DynamicObject>>(typed)
        .map_err(Unreadable::Shape)
        .and_then(|r| r.try_into().map_err(Unreadable::Request))
    {
        Ok(r) => r,
        // A review we cannot fully read still gets an answer that lets the pod through.
        Err(e) => {
            let answer = serde_json::json!({
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {"uid": uid, "allowed": true, "warnings": [format!("xray-sidecar not injected: the request holds no readable pod: {e}")]}
            });
            return Ok((answer.to_string().into_bytes(), Verdict::Error));
        }
    };
    let pod = raw.pointer("/request/object").filter(|o| o.is_object());
    let mut response = AdmissionResponse::from(&request);
    let outcome = match pod {
        Some(pod) if request.kind.kind == "Pod" => {
            let namespace = request.namespace.as_deref().unwrap_or("default");
            let ctx = Context { namespace, namespace_opted_in, workload: None };
            match mutate::mutate(pod, ctx, cfg) {
                Outcome::Inject { patch, .. } => match response.clone().with_patch(patch) {
                    Ok(r) => {
                        response = r;
                        Verdict::Injected
                    }
                    Err(e) => {
                        response.warnings =
                            Some(vec![format!("xray-sidecar not injected: cannot encode the patch: {e}")]);
                        Verdict::Error
                    }
                },
                Outcome::Skip(skip) => {
                    response.warnings = Some(vec![skip.message()]);
                    Verdict::Skipped(skip.label())
                }
            }
        }
        _ => {
            response.warnings = Some(vec!["xray-sidecar not injected: the request holds no readable pod".into()]);
            Verdict::Error
        }
    };
    let body = serde_json::to_vec(&response.into_review()).map_err(ReviewError::Encode)?;
    Ok((body, outcome))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        cfg: InjectConfig,
    }

    #[test]
    fn a_review_without_user_info_is_read_all_the_same() {
        let review = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "shop", "operation": "CREATE",
                "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}, "spec": {"containers": [{"name": "app", "image": "app"}]}}
            }
        });
        let (body, verdict) =
            answer(review.to_string().as_bytes(), false, &Cmd::parse_from(["xray-injector"]).cfg).expect("answered");
        let answer: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(answer["response"]["uid"], "u-1");
        let warnings = answer["response"]["warnings"].to_string();
        assert!(!warnings.contains("no readable pod"), "{warnings}");
        assert!(!matches!(verdict, Verdict::Error), "{verdict:?}");
    }
}
