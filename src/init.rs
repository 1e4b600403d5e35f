//! `xray-sidecar init`: installs the iptables rules that send a pod's TCP traffic through the proxy.
//!
//! Inbound TCP (nat PREROUTING) goes to the inbound listener, the application's outbound TCP (nat
//! OUTPUT) to the outbound listener. The proxy's own UID is never redirected, so its connections to
//! the application and to other pods cannot loop. The rules are applied atomically with
//! `iptables-restore --noflush`, into chains of our own that each run empties first, so a restarted
//! init container re-applies them instead of failing or duplicating.

use clap::Args;

use crate::contract::{self, init_flag};
use std::fmt;
use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::str::FromStr;

/// Command-line arguments of `xray-sidecar init`.
#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// UID the proxy runs as: its traffic is never redirected.
    #[arg(long = init_flag::PROXY_UID, env = "XRAY_SIDECAR_INIT_PROXY_UID", default_value_t = contract::PROXY_UID)]
    pub proxy_uid: u32,

    /// The proxy's inbound listener port.
    #[arg(long = init_flag::INBOUND_PORT, env = "XRAY_SIDECAR_INIT_INBOUND_PORT", default_value_t = contract::INBOUND_PORT)]
    pub inbound_port: u16,

    /// The proxy's outbound listener port.
    #[arg(long = init_flag::OUTBOUND_PORT, env = "XRAY_SIDECAR_INIT_OUTBOUND_PORT", default_value_t = contract::OUTBOUND_PORT)]
    pub outbound_port: u16,

    /// The proxy's admin port: probes reach it directly.
    #[arg(long = init_flag::ADMIN_PORT, env = "XRAY_SIDECAR_INIT_ADMIN_PORT", default_value_t = contract::ADMIN_PORT)]
    pub admin_port: u16,

    /// Inbound ports never redirected (e.g. 22,8081).
    #[arg(long = init_flag::EXCLUDE_INBOUND_PORTS, env = "XRAY_SIDECAR_INIT_EXCLUDE_INBOUND_PORTS", value_name = "PORTS", value_delimiter = ',')]
    pub exclude_inbound_ports: Vec<u16>,

    /// Only these inbound ports are redirected (the application's); all others when not given.
    #[arg(long = init_flag::INCLUDE_INBOUND_PORTS, env = "XRAY_SIDECAR_INIT_INCLUDE_INBOUND_PORTS", value_name = "PORTS", value_delimiter = ',')]
    pub include_inbound_ports: Vec<u16>,

    /// Outbound destination ports never redirected (e.g. 5432).
    #[arg(long = init_flag::EXCLUDE_OUTBOUND_PORTS, env = "XRAY_SIDECAR_INIT_EXCLUDE_OUTBOUND_PORTS", value_name = "PORTS", value_delimiter = ',')]
    pub exclude_outbound_ports: Vec<u16>,

    /// Outbound destinations never redirected, as CIDRs (169.254.0.0/16 always is).
    #[arg(long = init_flag::EXCLUDE_OUTBOUND_CIDRS, env = "XRAY_SIDECAR_INIT_EXCLUDE_OUTBOUND_CIDRS", value_name = "CIDRS", value_delimiter = ',')]
    pub exclude_outbound_cidrs: Vec<Cidr>,

    /// Only traffic to these CIDRs is redirected outbound; all destinations when not given.
    #[arg(long, env = "XRAY_SIDECAR_INIT_INCLUDE_OUTBOUND_CIDRS", value_name = "CIDRS", value_delimiter = ',')]
    pub include_outbound_cidrs: Vec<Cidr>,

    /// Print the iptables-restore input for IPv4 and IPv6 without applying anything.
    #[arg(long)]
    pub dry_run: bool,
}

/// An address range, `10.0.0.0/8` or `fd00::/8` (a bare address is a single host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s.trim().split_once('/').unwrap_or((s.trim(), ""));
        let addr: IpAddr = a.parse().map_err(|_| format!("`{s}` is not a CIDR (address/prefix)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() { max } else { p.parse().map_err(|_| format!("`{s}`: bad prefix length"))? };
        if prefix > max {
            return Err(format!("`{s}`: prefix longer than {max}"));
        }
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    /// Whether `ip` lies in this range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// IPv4 (iptables) or IPv6 (ip6tables).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// iptables.
    V4,
    /// ip6tables.
    V6,
}

impl Family {
    fn tool(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    fn holds(self, c: &Cidr) -> bool {
        c.addr.is_ipv4() == (self == Family::V4)
    }

    /// Destinations that are never the application's calls to other services.
    fn never_redirected(self) -> &'static [&'static str] {
        match self {
            Family::V4 => &["127.0.0.0/8", "169.254.0.0/16"],
            Family::V6 => &["::1/128", "fe80::/10", "fd00:ec2::254/128"],
        }
    }
}

const JUMP_IN: &str = "-A PREROUTING -p tcp -j XRAY_INBOUND";
const JUMP_OUT: &str = "-A OUTPUT -p tcp -j XRAY_OUTBOUND";

/// The `iptables-restore --noflush` input for one family, given what `-save -t nat` shows now.
pub fn rules(a: &InitArgs, family: Family, existing: &str) -> String {
    let mut r = String::from("*nat\n");
    for chain in ["XRAY_INBOUND", "XRAY_IN_REDIRECT", "XRAY_OUTBOUND", "XRAY_OUT_REDIRECT"] {
        // Declaring a chain creates it, or empties it when it exists: re-running starts clean.
        r += &format!(":{chain} - [0:0]\n");
    }
    r += &format!("-A XRAY_IN_REDIRECT -p tcp -j REDIRECT --to-ports {}\n", a.inbound_port);
    r += &format!("-A XRAY_OUT_REDIRECT -p tcp -j REDIRECT --to-ports {}\n", a.outbound_port);

    for port in [a.inbound_port, a.admin_port].iter().chain(&a.exclude_inbound_ports) {
        r += &format!("-A XRAY_INBOUND -p tcp --dport {port} -j RETURN\n");
    }
    if a.include_inbound_ports.is_empty() {
        r += "-A XRAY_INBOUND -p tcp -j XRAY_IN_REDIRECT\n";
    } else {
        for port in &a.include_inbound_ports {
            r += &format!("-A XRAY_INBOUND -p tcp --dport {port} -j XRAY_IN_REDIRECT\n");
        }
    }

    // The proxy's own connections (to the application and onwards) must not come back to it.
    r += &format!("-A XRAY_OUTBOUND -m owner --uid-owner {} -j RETURN\n", a.proxy_uid);
    r += "-A XRAY_OUTBOUND -o lo -j RETURN\n";
    for cidr in family.never_redirected() {
        r += &format!("-A XRAY_OUTBOUND -d {cidr} -j RETURN\n");
    }
    for port in &a.exclude_outbound_ports {
        r += &format!("-A XRAY_OUTBOUND -p tcp --dport {port} -j RETURN\n");
    }
    for cidr in a.exclude_outbound_cidrs.iter().filter(|c| family.holds(c)) {
        r += &format!("-A XRAY_OUTBOUND -d {cidr} -j RETURN\n");
    }
    if a.include_outbound_cidrs.is_empty() {
        r += "-A XRAY_OUTBOUND -p tcp -j XRAY_OUT_REDIRECT\n";
    } else {
        // Only the listed ranges of this family; none listed for it means none redirected.
        for cidr in a.include_outbound_cidrs.iter().filter(|c| family.holds(c)) {
            r += &format!("-A XRAY_OUTBOUND -p tcp -d {cidr} -j XRAY_OUT_REDIRECT\n");
        }
    }

    // The built-in chains are not ours to flush: add each jump only when it is not there yet.
    for jump in [JUMP_IN, JUMP_OUT] {
        if !existing.lines().any(|l| l.trim() == jump) {
            r += jump;
            r.push('\n');
        }
    }
    r += "COMMIT\n";
    r
}

impl InitArgs {
    /// Refuses what would install rules that break the pod or intercept nothing, which iptables
    /// itself takes without a word: a port 0 to redirect to, the listeners sharing a port, a port
    /// both included and excluded, and root as the proxy's user (every root process's traffic,
    /// the application's too when it runs as root, would then never be intercepted).
    pub fn validate(&self) -> Result<(), String> {
        let ports = [
            (init_flag::INBOUND_PORT, self.inbound_port),
            (init_flag::OUTBOUND_PORT, self.outbound_port),
            (init_flag::ADMIN_PORT, self.admin_port),
        ];
        for (i, (flag, port)) in ports.iter().enumerate() {
            if *port == 0 {
                return Err(format!("--{flag} 0: the proxy's listeners need a port"));
            }
            if let Some((other, _)) = ports[..i].iter().find(|(_, p)| p == port) {
                return Err(format!("--{other} and --{flag} are both {port}: each listener has a port of its own"));
            }
        }
        if let Some(port) = self.include_inbound_ports.iter().find(|p| self.exclude_inbound_ports.contains(p)) {
            return Err(format!(
                "port {port} is in both --{} and --{}",
                init_flag::INCLUDE_INBOUND_PORTS,
                init_flag::EXCLUDE_INBOUND_PORTS
            ));
        }
        if self.proxy_uid == 0 {
            return Err(format!(
                "--{} 0: the proxy must not run as root, whose traffic (every root process's) is never intercepted",
                init_flag::PROXY_UID
            ));
        }
        Ok(())
    }
}

/// Applies (or, with `--dry-run`, prints) the interception rules.
pub fn run(args: InitArgs) -> Result<(), crate::BoxError> {
    args.validate()?;
    if args.dry_run {
        for family in [Family::V4, Family::V6] {
            println!("# {}-restore --noflush", family.tool());
            print!("{}", rules(&args, family, ""));
        }
        return Ok(());
    }
    let variant = variant();
    eprintln!("xray-sidecar init: using {}", variant.name("iptables", None));
    apply(&args, Family::V4, &variant)?;
    match apply(&args, Family::V6, &variant) {
        Ok(()) => {}
        // Pods without IPv6 (or images without ip6tables) still get IPv4 interception.
        Err(e) => eprintln!("xray-sidecar init: IPv6 rules not applied ({e}); continuing with IPv4 only"),
    }
    eprintln!(
        "xray-sidecar init: traffic now goes through ports {} (in) and {} (out)",
        args.inbound_port, args.outbound_port
    );
    Ok(())
}

/// Which iptables back end the node uses: `iptables-nft`, `iptables-legacy`, or plain `iptables`.
#[derive(Debug)]
struct Variant(Option<&'static str>);

impl Variant {
    /// `iptables-nft-save`, `ip6tables-legacy-restore`, `iptables`, ...
    fn name(&self, tool: &str, action: Option<&str>) -> String {
        [Some(tool), self.0, action].into_iter().flatten().collect::<Vec<_>>().join("-")
    }
}

/// Picks the back end whose tables already hold rules (kube-proxy's and the CNI's), as the node's
/// own tools do; with none, nft when present.
fn variant() -> Variant {
    let rules = |v: &str| -> Option<usize> {
        let out = Command::new(format!("iptables-{v}-save")).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with("-A")).count())
    };
    match (rules("nft"), rules("legacy")) {
        (Some(n), Some(l)) if l > n => Variant(Some("legacy")),
        (Some(_), _) => Variant(Some("nft")),
        (None, Some(_)) => Variant(Some("legacy")),
        (None, None) => Variant(None),
    }
}

fn apply(args: &InitArgs, family: Family, variant: &Variant) -> Result<(), String> {
    let save = variant.name(family.tool(), Some("save"));
    let restore = variant.name(family.tool(), Some("restore"));
    let existing = Command::new(&save).args(["-t", "nat"]).output().map_err(|e| format!("cannot run {save}: {e}"))?;
    if !existing.status.success() {
        return Err(format!("{save} failed: {}", String::from_utf8_lossy(&existing.stderr).trim()));
    }
    let input = rules(args, family, &String::from_utf8_lossy(&existing.stdout));
    let mut child = Command::new(&restore)
        .arg("--noflush")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {restore}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).map_err(|e| format!("{restore}: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("{restore}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{restore} failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(())
}

#[cfg(test)]
#[path = "init_tests.rs"]
mod tests;
