//! Tunnels: bytes relayed both ways between the application and a destination the proxy cannot
//! read (a `CONNECT` or intercepted TLS), recorded as one remote subsegment per connection.

use http::{HeaderValue, Method, Uri};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::error::Failure;
use super::record::{Tracer, by_rules, destination_name};
use crate::xray::aws;
use crate::xray::centralized::rule::RequestFacts;
use crate::xray::id::{SegmentId, TraceId};
use crate::xray::segment::{Direction, Http, Kind, Segment, sanitize_name};
use crate::xray::tunnel::{Ended, Tunnel};

/// Where a tunnel goes, as far as naming it is concerned.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// The host the application asked for: the `CONNECT` authority's host or the TLS server name;
    /// else the destination address.
    pub host: &'a str,
    /// The destination port.
    pub port: u16,
    /// Opened with `CONNECT` (else intercepted).
    pub explicit: bool,
}

/// The record of one tunnel, from its opening to its end.
#[derive(Debug)]
pub struct Record {
    tracer: Arc<Tracer>,
    start: Instant,
    segment: Option<Box<Segment>>,
}

impl Record {
    /// Starts the record of a tunnel; nothing is kept when tracing is off or sampling says no.
    pub fn start(tracer: &Arc<Tracer>, target: Target<'_>) -> Record {
        let start = Instant::now();
        let segment = tracer.enabled().then(|| segment(tracer, target)).flatten();
        Record { tracer: tracer.clone(), start, segment }
    }

    /// Completes and emits the record.
    pub fn finish(self, sent: u64, received: u64, ended: Ended, failure: Option<Failure>) {
        let Some(mut seg) = self.segment else {
            return;
        };
        let end_time = seg.start_time + self.start.elapsed().as_secs_f64();
        seg.for_each_mut(|s| {
            s.end_time = end_time;
            s.failure.clone_from(&failure);
            if let Some(t) = s.tunnel.as_mut() {
                (t.bytes_sent, t.bytes_received, t.ended) = (sent, received, ended);
            }
        });
        self.tracer.export(*seg);
    }
}

/// A segment for this service holding the remote (or `aws`) subsegment of the tunnel: nothing
/// inside the tunnel can carry a trace header, so each tunnel starts its own trace.
fn segment(tracer: &Tracer, target: Target<'_>) -> Option<Box<Segment>> {
    let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let facts = RequestFacts { host: target.host, method: Method::CONNECT.as_str(), path: "/" };
    let (source, yes) = by_rules(tracer, &facts, wall.as_secs());
    tracer.metrics.record_decision(source, yes);
    if !yes {
        return None;
    }
    let aws = aws::service(target.host);
    let name = aws.as_ref().map_or_else(|| destination_name(target.host), |a| a.name.clone());
    let authority = if target.host.contains(':') {
        format!("[{}]:{}", target.host, target.port)
    } else {
        format!("{}:{}", target.host, target.port)
    };
    let tunnel = Tunnel { explicit: target.explicit, bytes_sent: 0, bytes_received: 0, ended: Ended::Closed, aws };
    let sub = Segment {
        name: Arc::from(sanitize_name(&name)),
        id: SegmentId::new(),
        trace_id: TraceId::new(wall.as_secs()),
        parent_id: None,
        start_time: wall.as_secs_f64(),
        end_time: 0.0,
        kind: Kind::EmbeddedSubsegment,
        direction: Direction::Outbound,
        traced: false,
        http: Http {
            method: Method::CONNECT,
            // What goes through `CONNECT` is TLS in practice; the URL says where, not what was asked.
            scheme: "https",
            host: HeaderValue::from_str(&authority).ok(),
            uri: Uri::from_static("/"),
            client_ip: None,
            x_forwarded_for: false,
            user_agent: None,
            status: None,
            content_length: None,
        },
        failure: None,
        subsegments: Vec::new(),
        tunnel: Some(Box::new(tunnel)),
        grpc: None,
    };
    let mut seg = sub.clone();
    seg.name = tracer.service_name.clone();
    seg.id = SegmentId::new();
    seg.kind = Kind::Segment;
    seg.subsegments.push(sub);
    Some(Box::new(seg))
}

/// Copies bytes both ways until both sides are done, then finishes `record` with the counts.
pub async fn relay<C, U>(client: C, upstream: U, record: Record)
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client, mut upstream) = (Counted::new(client), Counted::new(upstream));
    let result = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    let (sent, received) = (client.read, upstream.read);
    record.tracer.metrics.tunnels.fetch_add(1, Relaxed);
    match result {
        Ok(_) => {
            tracing::trace!(sent, received, "tunnel closed");
            record.finish(sent, received, Ended::Closed, None);
        }
        Err(e) => {
            tracing::debug!(sent, received, error = %e, "tunnel broken");
            record.finish(sent, received, Ended::Broken, Some(Failure::tunnel_broken(sent, received, &e)));
        }
    }
}

/// A stream that counts the bytes read from it.
struct Counted<T> {
    inner: T,
    read: u64,
}

impl<T> Counted<T> {
    fn new(inner: T) -> Self {
        Counted { inner, read: 0 }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.read += (buf.filled().len() - before) as u64;
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
