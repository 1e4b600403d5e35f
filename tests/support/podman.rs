//! Rootful podman for the container tests: a test-owned `containers.conf` (the runc runtime and
//! ulimits within this machine's hard limits), commands run with it, and everything a test made
//! (pods, networks, image tags) removed on drop, also when a check fails.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Podman with this test's configuration.
pub struct Podman {
    dir: PathBuf,
    conf: PathBuf,
    pods: Vec<String>,
    networks: Vec<String>,
    images: Vec<String>,
}

/// A resource limit's hard value from `/proc/self/limits` (`None` when unlimited or unreadable).
fn hard_limit(name: &str) -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().nth(1)?.parse().ok()
}

impl Podman {
    /// Podman when rootful podman with runc works here, else why not (the caller skips).
    pub fn usable(dir: &Path) -> Result<Podman, String> {
        let root = Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
        if !root {
            return Err("needs root for rootful podman and iptables in the pods".into());
        }
        for tool in ["podman", "runc", "catatonit"] {
            let script = format!("command -v {tool} || test -x /usr/libexec/podman/{tool}");
            let found = Command::new("sh").args(["-c", &script]).output();
            if !found.map(|o| o.status.success()).unwrap_or(false) {
                return Err(format!("{tool} is not installed (scripts/setup installs it)"));
            }
        }
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        // Lowering a limit is always allowed; podman's defaults exceed this machine's hard limits.
        let nofile = hard_limit("Max open files").unwrap_or(u64::MAX).min(16384);
        let nproc = hard_limit("Max processes").unwrap_or(u64::MAX).min(4096);
        let conf = dir.join("containers.conf");
        let text = format!(
            "[containers]\ndefault_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc={nproc}:{nproc}\"]\n\
             [engine]\nruntime = \"runc\"\n"
        );
        std::fs::write(&conf, text).map_err(|e| e.to_string())?;
        let podman = Podman { dir: dir.to_owned(), conf, pods: Vec::new(), networks: Vec::new(), images: Vec::new() };
        let info = podman.output(&["info", "--format", "{{.Host.OCIRuntime.Name}}"]);
        match info {
            Ok(o) if o.status.success() => Ok(podman),
            Ok(o) => Err(format!("podman info failed: {}", String::from_utf8_lossy(&o.stderr))),
            Err(e) => Err(format!("podman does not run: {e}")),
        }
    }

    /// The configuration file, for other programs that run podman (scripts/images).
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// A `podman` command with this test's configuration.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("podman");
        c.args(args).env("CONTAINERS_CONF", &self.conf);
        c
    }

    fn output(&self, args: &[&str]) -> std::io::Result<Output> {
        self.command(args).output()
    }

    /// Runs podman; its standard output, trimmed. Panics with podman's error when it fails.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.output(args).unwrap_or_else(|e| panic!("podman {args:?}: {e}"));
        assert!(out.status.success(), "podman {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Creates a bridge network, removed on drop; its gateway's address.
    pub fn network(&mut self, name: &str) -> String {
        self.run(&["network", "create", name]);
        self.networks.push(name.to_owned());
        self.run(&["network", "inspect", name, "--format", "{{range .Subnets}}{{.Gateway}}{{end}}"])
    }

    /// `podman kube play` of `yaml` on `network`; the pods it names are removed on drop.
    pub fn play(&mut self, yaml: &str, network: &str, pods: &[&str]) {
        let file = self.dir.join(format!("{}.yaml", pods.join("-")));
        std::fs::write(&file, yaml).unwrap();
        self.pods.extend(pods.iter().map(|p| p.to_string()));
        self.run(&["kube", "play", "--network", network, file.to_str().unwrap()]);
    }

    /// The address of `pod` on its network.
    pub fn pod_ip(&self, pod: &str) -> String {
        let infra = self.run(&["pod", "inspect", pod, "--format", "{{.InfraContainerID}}"]);
        self.run(&["inspect", &infra, "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"])
    }

    /// The host PID of `pod`'s infra container, whose network namespace the pod's containers share.
    pub fn pod_pid(&self, pod: &str) -> String {
        let infra = self.run(&["pod", "inspect", pod, "--format", "{{.InfraContainerID}}"]);
        self.run(&["inspect", &infra, "--format", "{{.State.Pid}}"])
    }

    /// Removes the tag `image` on drop, keeping its layers: the next build reuses them.
    pub fn untag_on_drop(&mut self, image: &str) {
        self.images.push(image.to_owned());
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        for pod in &self.pods {
            let _ = self.output(&["pod", "rm", "-f", "-t", "1", pod]);
        }
        for network in &self.networks {
            let _ = self.output(&["network", "rm", "-f", network]);
        }
        for image in &self.images {
            let _ = self.output(&["untag", image]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
