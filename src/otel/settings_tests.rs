//! Resolving the exporters from flags and the standard variables.

use super::*;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use std::collections::HashMap;

fn run(
    exporters: Option<&str>,
    flag: Option<&str>,
    vars: &[(&str, &str)],
) -> Result<(bool, Option<OtlpSettings>), String> {
    let vars: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let facts = Environment {
        origin: Some("AWS::EKS::Container"),
        cluster_name: Some("prod".into()),
        pod: Some("checkout-7d9".into()),
        namespace: Some("shop".into()),
        ..Environment::default()
    };
    let exporters = exporters.map(|e| e.parse::<Exporters>()).transpose()?;
    resolve(exporters, flag, "checkout", &facts, |k| vars.get(k).cloned())
}

fn resource(s: &OtlpSettings) -> HashMap<String, String> {
    s.resource
        .iter()
        .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(v) => Some((kv.key.clone(), v.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn x_ray_alone_unless_an_endpoint_or_the_flag_says_otherwise() {
    assert!(matches!(run(None, None, &[]), Ok((true, None))));
    let (xray, otlp) = run(None, Some("http://collector:4318"), &[]).expect("ok");
    assert!(xray);
    assert_eq!(otlp.expect("otlp").endpoint, "http://collector:4318/v1/traces");
    let (xray, otlp) = run(Some("otlp"), None, &[]).expect("ok");
    assert!(!xray);
    assert_eq!(otlp.expect("otlp").endpoint, "http://localhost:4318/v1/traces");
    assert!(run(Some("zipkin"), None, &[]).is_err());
}

#[test]
fn endpoints_follow_the_specification_precedence() {
    let endpoint =
        |flag, vars: &[(&str, &str)]| run(None, flag, vars).expect("ok").1.expect("otlp").endpoint.to_string();
    assert_eq!(endpoint(None, &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://agent:4318/")]), "http://agent:4318/v1/traces");
    assert_eq!(
        endpoint(
            None,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:1"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:2/custom")
            ]
        ),
        "http://b:2/custom"
    );
    assert_eq!(
        endpoint(Some("http://c:3/v1/traces"), &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:1")]),
        "http://c:3/v1/traces"
    );
    let err = run(None, Some("https://collector:4318"), &[]).err().unwrap_or_default();
    assert!(err.contains("--otlp-endpoint") && err.contains("https is not supported"), "{err}");
    assert!(run(None, None, &[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]).is_err());
}

#[test]
fn headers_resource_and_batching_come_from_the_standard_variables() {
    let (_, otlp) = run(
        Some("xray,otlp"),
        None,
        &[
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s%3Dcret, x-tenant = blue"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod,service.name=from-attrs,team=pay%20ments"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "64"),
        ],
    )
    .expect("ok");
    let otlp = otlp.expect("otlp");
    let headers: Vec<(String, String)> =
        otlp.headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned())).collect();
    assert_eq!(headers, [("api-key".to_owned(), "s=cret".to_owned()), ("x-tenant".to_owned(), "blue".to_owned())]);
    let r = resource(&otlp);
    assert_eq!(r["service.name"], "from-attrs");
    assert_eq!(r["team"], "pay ments");
    assert_eq!(r["deployment.environment"], "prod");
    assert_eq!(
        (r["k8s.pod.name"].as_str(), r["k8s.namespace.name"].as_str(), r["k8s.cluster.name"].as_str()),
        ("checkout-7d9", "shop", "prod")
    );
    assert_eq!((r["cloud.provider"].as_str(), r["cloud.platform"].as_str()), ("aws", "aws_eks"));
    assert_eq!((r["telemetry.sdk.name"].as_str(), r["telemetry.sdk.language"].as_str()), ("xray-sidecar", "rust"));
    assert_eq!(
        otlp.batching,
        Batching {
            max_queue: 2048,
            max_batch: 64,
            delay: Duration::from_millis(200),
            timeout: Duration::from_secs(30)
        }
    );

    let (_, otlp) =
        run(Some("otlp"), None, &[("OTEL_SERVICE_NAME", "svc"), ("OTEL_RESOURCE_ATTRIBUTES", "service.name=x")])
            .expect("ok");
    assert_eq!(resource(&otlp.expect("otlp"))["service.name"], "svc");
    let (_, otlp) = run(Some("otlp"), None, &[]).expect("ok");
    assert_eq!(resource(&otlp.expect("otlp"))["service.name"], "checkout");
    assert!(run(Some("otlp"), None, &[("OTEL_BSP_SCHEDULE_DELAY", "soon")]).is_err());
    assert!(run(Some("otlp"), None, &[("OTEL_EXPORTER_OTLP_HEADERS", "novalue")]).is_err());
}

#[test]
fn a_tiny_schedule_delay_or_an_absurd_timeout_is_brought_within_bounds() {
    let batching = |vars: &[(&str, &str)]| run(Some("otlp"), None, vars).expect("ok").1.expect("otlp").batching;
    // 0 would wake the exporter in a loop; the floor keeps it idle between rounds.
    for tiny in ["0", "1", "99"] {
        assert_eq!(batching(&[("OTEL_BSP_SCHEDULE_DELAY", tiny)]).delay, Duration::from_millis(100), "{tiny}");
    }
    assert_eq!(batching(&[("OTEL_BSP_SCHEDULE_DELAY", "250")]).delay, Duration::from_millis(250));
    let huge = u64::MAX.to_string();
    let b = batching(&[("OTEL_BSP_SCHEDULE_DELAY", &huge), ("OTEL_BSP_EXPORT_TIMEOUT", &huge)]);
    assert_eq!((b.delay, b.timeout), (Duration::from_secs(86_400), Duration::from_secs(3600)));
    assert_eq!(batching(&[("OTEL_BSP_EXPORT_TIMEOUT", "0")]).timeout, Duration::from_millis(1));
}

#[test]
fn compression_comes_from_the_traces_variable_then_the_general_one() {
    let compression = |vars: &[(&str, &str)]| run(Some("otlp"), None, vars).map(|(_, o)| o.expect("otlp").compression);
    assert_eq!(compression(&[]), Ok(Compression::None));
    assert_eq!(compression(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "GZIP")]), Ok(Compression::Gzip));
    assert_eq!(
        compression(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"), ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none")]),
        Ok(Compression::None)
    );
    let err = compression(&[("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "zstd")]).expect_err("unknown");
    assert!(err.contains("zstd"), "{err}");
}

#[test]
fn only_the_http_protobuf_protocol_is_taken() {
    let protocol = |vars: &[(&str, &str)]| run(Some("otlp"), None, vars).map(|(_, o)| o.is_some());
    assert_eq!(protocol(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]), Ok(true));
    for refused in ["grpc", "http/json"] {
        let err = protocol(&[("OTEL_EXPORTER_OTLP_PROTOCOL", refused)]).expect_err(refused);
        assert!(err.contains(refused) && err.contains("http/protobuf"), "{err}");
    }
    // The traces variable wins over the general one, as for the endpoint.
    let vars = [("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")];
    assert_eq!(protocol(&vars), Ok(true));
    // Nothing is checked when OTLP is not exported.
    assert!(run(Some("xray"), None, &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).is_ok());
}
