//! The pods the injector writes start the sidecar with command lines the sidecar's own parsers
//! (`ProxyArgs`, `InitArgs`) accept and read as meant, and probe paths the sidecar's own admin
//! listener answers: a flag, an environment variable or a path renamed on one side fails here.
#![allow(clippy::unwrap_used)]

use clap::{Args, Command, FromArgMatches, Parser};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use xray_lifecycle::Shutdown;
use xray_sidecar::admin::{self, Readiness};
use xray_sidecar::config::ProxyArgs;
use xray_sidecar::contract::{
    ADMIN_PORT, INBOUND_PORT, INIT_COMMAND, LIVE_PATH, OUTBOUND_PORT, PROXY_COMMAND, READY_PATH,
    max_connections_for_memory,
};
use xray_sidecar::init::{Cidr, InitArgs};
use xray_sidecar::metrics::Metrics;

use crate::config::InjectConfig;
use crate::mutate::{self, Context, INIT, Outcome, PROXY};

#[derive(Parser)]
struct Cmd {
    #[command(flatten)]
    cfg: InjectConfig,
}

/// The pod the injector makes of a pod with these annotations, with the injector run with `flags`.
fn injected(annotations: Value, flags: &[&str]) -> Value {
    let cfg = Cmd::try_parse_from(["xray-injector"].iter().chain(flags)).unwrap().cfg;
    let pod = json!({
        "metadata": {"name": "web-0", "annotations": annotations, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx",
                 "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}}}]}
    });
    let ctx = Context { namespace: "shop", namespace_opted_in: false, workload: None };
    match mutate::mutate(&pod, ctx, &cfg) {
        Outcome::Inject { pod, .. } => pod,
        Outcome::Skip(why) => panic!("not injected: {why:?}"),
    }
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    ["containers", "initContainers"]
        .iter()
        .filter_map(|k| pod["spec"][k].as_array())
        .flatten()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name} in {pod}"))
}

/// The container's command line as the sidecar sees it: its args, then each `env` entry as the
/// flag that declares that variable (a `fieldRef` gets a sample value). An entry that no flag of
/// `command` declares fails the test: the sidecar would never read it.
fn command_line(container: &Value, command: &Command, subcommand: &str) -> Vec<String> {
    let args: Vec<String> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().into()).collect();
    assert_eq!(args.first().map(String::as_str), Some(subcommand), "{args:?}");
    let mut argv = vec!["xray-sidecar".to_owned()];
    argv.extend(args.into_iter().skip(1));
    for entry in container["env"].as_array().into_iter().flatten() {
        let name = entry["name"].as_str().unwrap();
        let value = match entry["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            Some("metadata.name") => "web-0".to_owned(),
            Some("metadata.namespace") => "shop".to_owned(),
            Some(other) => panic!("{name} from {other}: no sample value"),
            None => entry["value"].as_str().unwrap().to_owned(),
        };
        let arg = command
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e == name))
            .unwrap_or_else(|| panic!("the injector sets {name}, which the sidecar never reads"));
        argv.push(format!("--{}={value}", arg.get_long().unwrap()));
    }
    argv
}

fn parse<A: Args + FromArgMatches>(container: &Value, subcommand: &str) -> A {
    let command = A::augment_args(Command::new("xray-sidecar"));
    let argv = command_line(container, &command, subcommand);
    let matches = command.try_get_matches_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    A::from_arg_matches(&matches).unwrap()
}

#[test]
fn the_proxy_container_parses_with_the_sidecars_own_flags() {
    let annotations = json!({
        "xray-sidecar.io/inject": "true",
        "xray-sidecar.io/sampling-rules": "web-rules",
        "xray-sidecar.io/sample-health-checks": "true",
        "xray-sidecar.io/keep-alive-timeout": "120s",
        "xray-sidecar.io/stream-idle-timeout": "900s",
        "xray-sidecar.io/proxy-cpu-limit": "2500m",
    });
    let pod = injected(
        annotations,
        &[
            "--cluster-name",
            "prod",
            "--daemon-address",
            "xray.daemons:2000",
            "--proxy-memory-limit",
            "256Mi",
            "--proxy-log-format",
            "json",
        ],
    );
    let args: ProxyArgs = parse(container(&pod, PROXY), PROXY_COMMAND);
    assert!(args.validate().is_ok());
    assert!(args.transparent);
    assert_eq!(args.listen, SocketAddr::from(([0, 0, 0, 0], INBOUND_PORT)));
    assert_eq!(args.outbound_listen, Some(SocketAddr::from(([127, 0, 0, 1], OUTBOUND_PORT))));
    assert_eq!(args.admin_listen, Some(SocketAddr::from(([0, 0, 0, 0], ADMIN_PORT))));
    assert_eq!(args.service_name, "web");
    assert_eq!(args.daemon_address.udp.to_string(), "xray.daemons:2000");
    assert_eq!((args.pod_name.as_deref(), args.pod_namespace.as_deref()), (Some("web-0"), Some("shop")));
    assert_eq!(args.cluster_name.as_deref(), Some("prod"));
    assert!(args.sampling_rules.as_ref().is_some_and(|p| p.ends_with("sampling-rules.json")));
    assert_eq!(args.probe_paths, ["/healthz"]);
    assert!(args.sample_health_checks);
    assert_eq!(args.keep_alive_timeout, Duration::from_secs(120));
    assert_eq!(args.stream_idle_timeout, Duration::from_secs(900));
    assert_eq!(container(&pod, PROXY)["resources"]["limits"]["memory"], "256Mi");
    assert_eq!(args.max_connections, max_connections_for_memory(256));
    assert_eq!(args.log_format, xray_lifecycle::logging::Format::Json);
    assert_eq!(args.worker_threads(), 3, "one worker per core of the CPU limit, rounded up");
    let ports: Vec<&Value> =
        container(&pod, PROXY)["ports"].as_array().unwrap().iter().map(|p| &p["containerPort"]).collect();
    assert_eq!(ports, [&json!(INBOUND_PORT), &json!(ADMIN_PORT)]);
}

#[test]
fn the_init_container_parses_with_the_sidecars_own_flags() {
    let annotations = json!({
        "xray-sidecar.io/inject": "true",
        "xray-sidecar.io/exclude-inbound-ports": "22, 9090",
        "xray-sidecar.io/exclude-outbound-ports": "5432",
        "xray-sidecar.io/exclude-outbound-cidrs": "10.0.0.0/8,fd00::/8",
        "xray-sidecar.io/app-ports": "8080",
    });
    let pod = injected(annotations, &["--proxy-uid", "3100"]);
    let args: InitArgs = parse(container(&pod, INIT), INIT_COMMAND);
    assert_eq!(args.proxy_uid, 3100);
    assert_eq!((args.inbound_port, args.outbound_port, args.admin_port), (INBOUND_PORT, OUTBOUND_PORT, ADMIN_PORT));
    assert_eq!(args.exclude_inbound_ports, [22, 9090]);
    assert_eq!(args.exclude_outbound_ports, [5432]);
    assert_eq!(args.include_inbound_ports, [8080]);
    let cidrs: Vec<Cidr> = ["10.0.0.0/8", "fd00::/8"].iter().map(|c| c.parse().unwrap()).collect();
    assert_eq!(args.exclude_outbound_cidrs, cidrs);
    assert!(!args.dry_run);
    let proxy = container(&pod, PROXY);
    assert_eq!(proxy["securityContext"]["runAsUser"], 3100);
}

#[test]
fn the_widest_values_the_injector_accepts_parse_in_the_sidecar() {
    let ports: Vec<String> = (65472..=65535).map(|p| p.to_string()).collect();
    let cidrs: Vec<String> = (0..64).map(|i| format!("fd00:{i:x}::/32")).collect();
    let name = format!("shop/cart v2:blue@eu-west-1_%&#=+.{}", "x".repeat(166));
    let annotations = json!({
        "xray-sidecar.io/inject": "true",
        "xray-sidecar.io/service-name": name,
        "xray-sidecar.io/exclude-inbound-ports": ports.join(" , "),
        "xray-sidecar.io/exclude-outbound-cidrs": cidrs.join(", "),
        "xray-sidecar.io/app-ports": "1,65535",
    });
    let pod = injected(annotations, &[]);
    let init: InitArgs = parse(container(&pod, INIT), INIT_COMMAND);
    assert_eq!(init.exclude_inbound_ports.len(), 64);
    assert_eq!(init.exclude_outbound_cidrs.len(), 64);
    assert_eq!(init.include_inbound_ports, [1, 65535]);
    let proxy: ProxyArgs = parse(container(&pod, PROXY), PROXY_COMMAND);
    assert!(proxy.validate().is_ok());
    assert_eq!(proxy.worker_threads(), 1, "the injector's default CPU limit is one core");
    // The limit the injector passes for its default memory limit is the proxy's own default.
    let defaults = ProxyArgs::augment_args(Command::new("xray-sidecar")).get_matches_from([
        "xray-sidecar",
        "--service-name",
        "web",
    ]);
    assert_eq!(proxy.max_connections, ProxyArgs::from_arg_matches(&defaults).unwrap().max_connections);
    assert_eq!(name.len(), 200);
    assert_eq!(proxy.service_name, name);
    assert_eq!(xray_sidecar::xray::segment::sanitize_name(&proxy.service_name), name, "X-Ray takes it as is");
}

/// The status the sidecar's admin listener at `addr` answers a GET of `path` with.
async fn status(addr: SocketAddr, path: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{path}: {response:?}"))
}

#[tokio::test]
async fn the_proxy_containers_probes_are_answered_by_the_sidecars_admin_listener() {
    let pod = injected(json!({"xray-sidecar.io/inject": "true"}), &[]);
    let proxy = container(&pod, PROXY);
    let mut paths = Vec::new();
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let get = &proxy[probe]["httpGet"];
        assert_eq!(get["port"], json!(ADMIN_PORT), "{probe}: {proxy}");
        paths.push(get["path"].as_str().unwrap_or_else(|| panic!("{probe}: {proxy}")).to_owned());
    }
    assert_eq!(paths, [READY_PATH, READY_PATH, LIVE_PATH]);

    // The sidecar's own admin listener, ready, answers every probe path the injector wrote.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ready = Readiness::default();
    ready.set(true);
    let (shutdown, stopped) = Shutdown::new();
    let timeout = Duration::from_secs(5);
    let server =
        tokio::spawn(admin::serve(vec![listener], Arc::new(Metrics::default()), ready, timeout, stopped, timeout));
    for path in &paths {
        assert_eq!(status(addr, path).await, 200, "{path}");
    }
    assert_eq!(status(addr, "/not-a-probe").await, 404, "the listener tells paths apart");
    shutdown.trigger();
    server.await.unwrap();
}
