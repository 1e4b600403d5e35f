//! The proxy container's CPU and memory: the injector's configuration, or a pod's own where its
//! annotations ask for more (a busy pod) or less, and the connection limit that follows from the
//! memory limit.

use serde_json::{Value, json};
use xray_sidecar::contract::{DEFAULT_PROXY_MEMORY_LIMIT_MIB, max_connections_for_memory};

use crate::annotation::InvalidValue;
use crate::config::InjectConfig;
use crate::quantity;

/// The most worker threads a CPU limit gives the proxy.
const MAX_WORKERS: u32 = 32;

/// Requests and limits, as the container spec takes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resources {
    /// CPU request.
    pub cpu_request: String,
    /// CPU limit.
    pub cpu_limit: String,
    /// Memory request.
    pub memory_request: String,
    /// Memory limit.
    pub memory_limit: String,
}

impl Resources {
    /// What the injector gives every proxy.
    pub fn from_config(cfg: &InjectConfig) -> Resources {
        Resources {
            cpu_request: cfg.proxy_cpu_request.clone(),
            cpu_limit: cfg.proxy_cpu_limit.clone(),
            memory_request: cfg.proxy_memory_request.clone(),
            memory_limit: cfg.proxy_memory_limit.clone(),
        }
    }

    /// Refuses what no single flag's check can see in the injector's own figures: a request above
    /// its limit, which the API server would refuse in every pod given it. Run at start.
    pub fn check_config(cfg: &InjectConfig) -> Result<(), String> {
        match Resources::from_config(cfg).request_above_limit() {
            None => Ok(()),
            Some((Resource::Cpu, why)) => Err(format!("--proxy-cpu-request/--proxy-cpu-limit: {why}")),
            Some((Resource::Memory, why)) => Err(format!("--proxy-memory-request/--proxy-memory-limit: {why}")),
        }
    }

    /// A request above its limit, which the API server would refuse along with the whole pod:
    /// which request, and why.
    pub fn request_above_limit(&self) -> Option<(Resource, InvalidValue)> {
        [
            (Resource::Cpu, &self.cpu_request, &self.cpu_limit),
            (Resource::Memory, &self.memory_request, &self.memory_limit),
        ]
        .into_iter()
        .find(|(_, request, limit)| match (quantity::value(request), quantity::value(limit)) {
            (Some(r), Some(l)) => r > l,
            _ => false,
        })
        .map(|(which, request, limit)| {
            (which, InvalidValue::RequestAboveLimit { request: request.clone(), limit: limit.clone() })
        })
    }

    /// How many connections the proxy may serve at once within its memory limit.
    pub fn max_connections(&self) -> u32 {
        // The limit is a checked quantity (at start, or as an annotation); the default's figure
        // is only a fallback.
        let mib = quantity::mebibytes(&self.memory_limit).unwrap_or(DEFAULT_PROXY_MEMORY_LIMIT_MIB);
        max_connections_for_memory(mib)
    }

    /// The proxy's worker threads: one per core of its CPU limit, rounded up (as Istio sizes its
    /// proxies' concurrency), so that a pod that gives its proxy more CPU gets it used; the
    /// proxy's own choice (at most two) when the limit is no quantity.
    pub fn workers(&self) -> Option<u32> {
        quantity::value(&self.cpu_limit).map(|cores| cores.ceil().clamp(1.0, MAX_WORKERS as f64) as u32)
    }

    /// The container's `resources`.
    pub fn to_json(&self) -> Value {
        json!({
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit}
        })
    }
}

/// Which resource a request is of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// CPU.
    Cpu,
    /// Memory.
    Memory,
}
