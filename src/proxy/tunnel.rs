//! Tunnels: bytes relayed both ways between the application and a destination the proxy cannot
//! read (a `CONNECT` or intercepted TLS), recorded as one remote subsegment per connection.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use xray_lifecycle::Held;

use super::error::Failure;
use super::record::{self, Tracer};
use super::relay;
use crate::xray::segment::Segment;
use crate::xray::tunnel::Ended;

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

/// When a tunnel was asked for. Its record starts then, but is begun (and sampled) only once the
/// connection turns out to be a tunnel: a `CONNECT` that carries plain HTTP is recorded request by
/// request instead.
#[derive(Clone, Copy, Debug)]
pub struct Opened {
    instant: Instant,
    wall: Duration,
}

impl Opened {
    /// Now.
    pub fn now() -> Opened {
        Opened { instant: Instant::now(), wall: SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default() }
    }
}

/// The record of one tunnel, from its opening to its end.
#[derive(Debug)]
pub struct TunnelRecord {
    tracer: Arc<Tracer>,
    start: Instant,
    segment: Option<Box<Segment>>,
}

impl TunnelRecord {
    /// Starts the record of a tunnel opened at `opened`; nothing is kept when tracing is off or
    /// sampling says no.
    pub fn start(tracer: &Arc<Tracer>, target: Target<'_>, opened: Opened) -> TunnelRecord {
        let segment = tracer
            .enabled()
            .then(|| record::tunnel_segment(tracer, target.host, target.port, target.explicit, opened.wall))
            .flatten();
        TunnelRecord { tracer: tracer.clone(), start: opened.instant, segment }
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
        self.tracer.export(seg);
    }
}

/// Copies bytes both ways until both sides are done, or the shutdown's grace period is over for
/// `held`; then finishes `record` with the counts.
pub async fn relay<C, U>(client: C, upstream: U, record: TunnelRecord, held: Held)
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client, mut upstream) = (Counted::new(client), Counted::new(upstream));
    let result = relay::copy_until_cut(&mut client, &mut upstream, &held).await;
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
