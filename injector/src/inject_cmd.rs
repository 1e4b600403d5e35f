//! `xray-injector inject -f FILE`: the mutated manifests, printed, so a user can see exactly what the
//! webhook would add and apply it without the webhook.

use clap::Args;
use serde_json::Value;
use std::io::{self, Read};
use std::path::PathBuf;

use crate::config::InjectConfig;
use crate::mutate::{self, Context, Outcome};

/// Command-line arguments of `xray-injector inject`.
#[derive(Debug, Clone, Args)]
pub struct InjectArgs {
    /// The manifest (Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs, or a
    /// List of them); `-` reads standard input.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,
    /// What to inject.
    #[command(flatten)]
    pub config: InjectConfig,
}

/// Why `inject` failed.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// The manifest file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Standard input could not be read.
    #[error("{0}")]
    Stdin(#[source] io::Error),
    /// The manifest is not YAML.
    #[error("{}: not YAML: {source}", path.display())]
    NotYaml {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_norway::Error,
    },
    /// The mutated manifests could not be written as YAML.
    #[error("{0}")]
    Render(#[source] serde_norway::Error),
}

/// Injects every pod and pod template in `doc`; returns the messages for those left alone.
pub fn inject_doc(doc: &mut Value, cfg: &InjectConfig, notes: &mut Vec<String>) {
    let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
    let name = doc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_owned();
    let namespace = doc.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default").to_owned();
    let template = match kind.as_str() {
        "List" => {
            if let Some(items) = doc.get_mut("items").and_then(Value::as_array_mut) {
                for item in items {
                    inject_doc(item, cfg, notes);
                }
            }
            return;
        }
        "Pod" => None,
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" | "ReplicationController" => {
            Some("/spec/template")
        }
        "CronJob" => Some("/spec/jobTemplate/spec/template"),
        _ => return,
    };
    let target = match template {
        Some(p) => doc.pointer_mut(p),
        None => Some(&mut *doc),
    };
    let Some(pod) = target else {
        return notes.push(format!("{kind}/{name}: no pod template"));
    };
    // Given to this command, a workload is injected unless it says "false".
    let ctx = Context { namespace: &namespace, namespace_opted_in: true, workload: Some(&name) };
    match mutate::mutate(pod, ctx, cfg) {
        Outcome::Inject { pod: new, .. } => *pod = new,
        Outcome::Skip(skip) => notes.push(format!("{kind}/{name}: {}", skip.message())),
    }
}

/// Runs the command: the mutated manifests on standard output, notes on standard error.
pub fn run(args: &InjectArgs) -> Result<(), InjectError> {
    let path = &args.file;
    let text = if path.as_os_str() == "-" {
        let mut s = String::new();
        io::stdin().read_to_string(&mut s).map_err(InjectError::Stdin)?;
        s
    } else {
        std::fs::read_to_string(path).map_err(|source| InjectError::Read { path: path.clone(), source })?
    };
    let mut docs = crate::yaml::parse(&text).map_err(|source| InjectError::NotYaml { path: path.clone(), source })?;
    let mut notes = Vec::new();
    for doc in &mut docs {
        inject_doc(doc, &args.config, &mut notes);
    }
    print!("{}", crate::yaml::render(&docs).map_err(InjectError::Render)?);
    for n in notes {
        eprintln!("{n}");
    }
    Ok(())
}
