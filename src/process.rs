//! The process's own figures for `/metrics`, under the names every Prometheus client library gives
//! them (`process_*`), so that the dashboards and alerts a platform team already has for memory,
//! CPU and descriptor exhaustion work on the sidecar unchanged.

use nix::sys::resource::{Resource, UsageWho, getrlimit, getrusage};
use std::fmt::Write;

/// Appends the process metrics to `o`; a figure that cannot be read is left out.
pub fn render(o: &mut String) {
    let mut metric = |name: &str, help: &str, kind: &str, value: f64| {
        let _ = writeln!(o, "# HELP process_{name} {help}\n# TYPE process_{name} {kind}\nprocess_{name} {value}");
    };
    if let Some(bytes) = resident_bytes() {
        metric("resident_memory_bytes", "Resident memory size in bytes.", "gauge", bytes as f64);
    }
    if let Ok(usage) = getrusage(UsageWho::RUSAGE_SELF) {
        let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        let cpu = seconds(usage.user_time()) + seconds(usage.system_time());
        metric("cpu_seconds_total", "Total user and system CPU time spent in seconds.", "counter", cpu);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        // Less one: the directory being read is open too.
        let open = fds.count().saturating_sub(1);
        metric("open_fds", "Number of open file descriptors.", "gauge", open as f64);
    }
    if let Ok((soft, _)) = getrlimit(Resource::RLIMIT_NOFILE) {
        metric("max_fds", "Maximum number of open file descriptors.", "gauge", soft as f64);
    }
}

/// Resident memory from `/proc/self/status` (`VmRSS:  7240 kB`).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kb: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kb * 1024)
}
