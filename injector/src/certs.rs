//! `xray-injector certs`: a CA and a serving certificate for clusters without cert-manager, and the
//! webhook configuration patched with the CA bundle, ready for `kubectl apply`.

use base64::Engine;
use clap::Args;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use serde_json::Value;
use std::io;
use std::path::{Path, PathBuf};

/// Command-line arguments of `xray-injector certs`.
#[derive(Debug, Clone, Args)]
pub struct CertsArgs {
    /// The injector's Service name.
    #[arg(long, default_value = "xray-injector")]
    pub service: String,
    /// The injector's namespace.
    #[arg(long, default_value = "xray-sidecar")]
    pub namespace: String,
    /// Where `ca.crt`, `tls.crt` and `tls.key` are written.
    #[arg(long, default_value = ".")]
    pub out_dir: PathBuf,
    /// A MutatingWebhookConfiguration manifest to write again, as `webhook.yaml` in the output
    /// folder, with `caBundle` set on every webhook.
    #[arg(long, value_name = "FILE")]
    pub webhook_config: Option<PathBuf>,
}

/// Why `certs` failed.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// The key pairs or certificates could not be made.
    #[error("{0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be read or written, or the output folder made.
    #[error("cannot {action} {}: {source}", path.display())]
    File {
        /// `read`, `write` or `create`.
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The webhook configuration is not YAML.
    #[error("{}: {source}", path.display())]
    Yaml {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_norway::Error,
    },
    /// The webhook configuration holds no webhook to give the CA bundle to.
    #[error("{}: no MutatingWebhookConfiguration with webhooks found", path.display())]
    NoWebhooks {
        /// The file.
        path: PathBuf,
    },
    /// The patched configuration could not be written as YAML.
    #[error("{0}")]
    Render(#[source] serde_norway::Error),
}

/// The generated PEM files.
#[derive(Debug)]
pub struct Generated {
    /// The CA certificate.
    pub ca: String,
    /// The serving certificate.
    pub cert: String,
    /// The serving key.
    pub key: String,
}

/// Creates a CA and a certificate for the Service's DNS names, signed by it.
pub fn generate(service: &str, namespace: &str) -> Result<Generated, rcgen::Error> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CommonName, "xray-injector CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let names = vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
        format!("{service}.{namespace}"),
        service.to_owned(),
    ];
    let mut params = CertificateParams::new(names)?;
    params.distinguished_name.push(DnType::CommonName, format!("{service}.{namespace}.svc"));
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;
    Ok(Generated { ca: ca.pem(), cert: cert.pem(), key: key.serialize_pem() })
}

/// Sets `caBundle` on every webhook of every MutatingWebhookConfiguration in `docs`.
pub fn patch_ca_bundle(docs: &mut [Value], ca_pem: &str) -> usize {
    let bundle = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let mut n = 0;
    for doc in docs.iter_mut().filter(|d| d["kind"] == "MutatingWebhookConfiguration") {
        if let Some(hooks) = doc.get_mut("webhooks").and_then(Value::as_array_mut) {
            for hook in hooks {
                if let Some(cc) = hook.get_mut("clientConfig").and_then(Value::as_object_mut) {
                    cc.insert("caBundle".into(), Value::String(bundle.clone()));
                    n += 1;
                }
            }
        }
    }
    n
}

/// Runs the command.
pub fn run(args: &CertsArgs) -> Result<(), CertsError> {
    let g = generate(&args.service, &args.namespace)?;
    std::fs::create_dir_all(&args.out_dir).map_err(file_error("create", &args.out_dir))?;
    write(&args.out_dir.join("ca.crt"), &g.ca)?;
    write(&args.out_dir.join("tls.crt"), &g.cert)?;
    write(&args.out_dir.join("tls.key"), &g.key)?;
    if let Some(file) = &args.webhook_config {
        let text = std::fs::read_to_string(file).map_err(file_error("read", file))?;
        let mut docs = crate::yaml::parse(&text).map_err(|source| CertsError::Yaml { path: file.clone(), source })?;
        if patch_ca_bundle(&mut docs, &g.ca) == 0 {
            return Err(CertsError::NoWebhooks { path: file.clone() });
        }
        write(&args.out_dir.join("webhook.yaml"), &crate::yaml::render(&docs).map_err(CertsError::Render)?)?;
    }
    eprintln!(
        "wrote ca.crt, tls.crt, tls.key{} to {}",
        if args.webhook_config.is_some() { " and webhook.yaml" } else { "" },
        args.out_dir.display()
    );
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<(), CertsError> {
    std::fs::write(path, text).map_err(file_error("write", path))
}

fn file_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CertsError {
    let path = path.to_owned();
    move |source| CertsError::File { action, path, source }
}
