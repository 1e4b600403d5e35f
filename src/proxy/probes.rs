//! Health checks kept off the service map: kubelet probes (`User-Agent: kube-probe/…`), Elastic Load
//! Balancing's target health checks (`ELB-HealthChecker/…`, from an ALB or NLB whose targets are the
//! pods) and requests to the pod's probe paths are forwarded and counted, but never sampled unless
//! asked.

use http::HeaderValue;

use crate::xray::segment::Direction;

/// `User-Agent` prefixes of health checkers, compared without regard to case.
const CHECKERS: [&[u8]; 2] = [b"kube-probe/", b"ELB-HealthChecker/"];

/// Which requests are health checks.
#[derive(Clone, Debug, Default)]
pub struct Probes {
    /// The application's probe paths (liveness, readiness, startup), without query.
    paths: Vec<String>,
    /// Whether probes are traced like any request.
    pub traced: bool,
}

impl Probes {
    /// Health checks are the kubelet's requests and requests to `paths` (an empty entry is ignored;
    /// a query is dropped, as only the path is compared).
    pub fn new(paths: &[String], traced: bool) -> Self {
        let paths = paths
            .iter()
            .map(|p| p.split('?').next().unwrap_or_default().trim().to_owned())
            .filter(|p| !p.is_empty())
            .map(|p| if p.starts_with('/') { p } else { format!("/{p}") })
            .collect();
        Probes { paths, traced }
    }

    /// Whether this request is a health check that must not be sampled. The probe paths are this
    /// pod's, so only requests it receives are compared with them.
    pub fn skips(&self, user_agent: Option<&HeaderValue>, path: &str, direction: Direction) -> bool {
        if self.traced {
            return false;
        }
        let checker = user_agent.is_some_and(|ua| {
            let ua = ua.as_bytes();
            CHECKERS.iter().any(|c| ua.get(..c.len()).is_some_and(|p| p.eq_ignore_ascii_case(c)))
        });
        checker || (direction == Direction::Inbound && self.paths.iter().any(|p| p == path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IN: Direction = Direction::Inbound;

    /// Whether `p` skips a request for `uri` from `ua`, read as the record reads them.
    fn skips(p: &Probes, ua: Option<&str>, uri: &str, direction: Direction) -> bool {
        let mut b = http::Request::get(uri);
        if let Some(ua) = ua {
            b = b.header(http::header::USER_AGENT, ua);
        }
        let req = b.body(()).unwrap_or_default();
        p.skips(req.headers().get(http::header::USER_AGENT), req.uri().path(), direction)
    }

    #[test]
    fn kubelet_probes_and_probe_paths_are_health_checks() {
        let p = Probes::new(&["/healthz".into(), "ready?deep=1".into(), " ".into()], false);
        assert!(skips(&p, Some("kube-probe/1.33"), "/anything", IN));
        assert!(skips(&p, Some("Kube-Probe/1.29+"), "/", IN));
        assert!(skips(&p, Some("ELB-HealthChecker/2.0"), "/", IN), "an ALB's or NLB's target health check");
        assert!(!skips(&p, Some("ELB-HealthChecker"), "/", IN));
        assert!(skips(&p, None, "/healthz", IN));
        assert!(skips(&p, Some("curl/8"), "/ready?deep=0", IN));
        assert!(!skips(&p, Some("curl/8"), "/healthz/deep", IN));
        assert!(!skips(&p, Some("kube-probe"), "/", IN));
        assert!(!skips(&p, None, "/", IN));
        assert!(!skips(&p, None, "/healthz", Direction::Outbound), "another service's check is traced");
    }

    #[test]
    fn tracing_them_can_be_asked_for() {
        let p = Probes::new(&["/healthz".into()], true);
        assert!(!skips(&p, Some("kube-probe/1.33"), "/healthz", IN));
    }
}
