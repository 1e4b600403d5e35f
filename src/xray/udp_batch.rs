//! Batched datagram output: many segment documents to the daemon in few system calls.
//!
//! The cheapest way the kernel offers is UDP GSO (`UDP_SEGMENT`): one `sendmsg` carries up to 64
//! datagrams of one size, which the kernel (or the NIC) cuts apart. Documents differ in length, so
//! they are grouped by length and padded with trailing spaces to the longest of their group: JSON
//! allows whitespace after the value, so the daemon parses each datagram as before. When the kernel
//! or the route refuses GSO (an old kernel, a device without checksum offload, an MTU below the
//! group's size) the documents go out with `sendmmsg`, and when that is refused too (a sandbox that
//! filters it), one `send` each. Every fallback is counted; none loses a document.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use xray_lifecycle::logging::Throttle;

use nix::errno::Errno;
use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, send, sendmmsg, sendmsg};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use super::delivery::DeliveryCounters;

/// Datagrams in one GSO send: the kernel's `UDP_MAX_SEGMENTS` before Linux 6.6 raised it.
pub const MAX_SEGMENTS: usize = 64;

/// Payload bytes in one GSO send, under UDP's 65,507-byte limit.
pub const MAX_SEND: usize = 65_000;

/// The most padding a document gets to join a group: the kernel copies it like the document, so
/// it is bounded, yet wide enough that documents of one service (which differ by a path, a user
/// agent, a number's digits) share a group.
const MAX_PAD: usize = 256;

/// Datagrams in one `sendmmsg` call.
const MMSG_BATCH: usize = 64;

/// A GSO size the kernel refuses at or below this means GSO does not work on this route at all;
/// above it, it may only mean that the route's MTU is smaller than the group's datagrams.
const SMALL_GSO: usize = 1200;

/// Datagrams the kernel refuses (a daemon that is down refuses every burst) are told at most this
/// often, with how many since the last time; `xray_sidecar_daemon_send_errors_total` counts each.
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(60);

static SPACES: [u8; MAX_PAD] = [b' '; MAX_PAD];

/// The cheapest way of sending the kernel has accepted so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One `sendmsg` with `UDP_SEGMENT` per group of equal-sized datagrams.
    Gso,
    /// One `sendmmsg` per burst of datagrams.
    Mmsg,
    /// One `send` per datagram.
    Plain,
}

/// Encoded datagrams of one burst, back to back in one buffer reused from burst to burst.
#[derive(Debug, Default)]
pub struct Datagrams {
    buf: Vec<u8>,
    ends: Vec<usize>,
}

impl Datagrams {
    /// Appends one datagram written by `write`; it is kept when it succeeds and fits in `max`
    /// bytes (`Ok(true)`), dropped when it is larger (`Ok(false)`) or fails.
    pub fn push<E>(&mut self, max: usize, write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>) -> Result<bool, E> {
        let start = self.buf.len();
        let written = write(&mut self.buf);
        if written.is_err() || self.buf.len() - start > max {
            self.buf.truncate(start);
            return written.map(|()| false);
        }
        self.ends.push(self.buf.len());
        Ok(true)
    }

    /// How many datagrams there are.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Forgets every datagram, keeping the memory for the next burst.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }

    /// The `i`-th datagram.
    pub fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.buf[start..self.ends[i]]
    }
}

/// What became of a burst.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    /// Datagrams the kernel accepted.
    pub sent: usize,
    /// Datagrams it refused (daemon unreachable, buffer errors).
    pub failed: usize,
}

/// Sends bursts of datagrams to a connected socket in as few system calls as the kernel allows.
#[derive(Debug)]
pub struct UdpBatch {
    mode: Mode,
    /// Groups of datagrams this long or longer skip GSO: the route refused them.
    gso_limit: usize,
    /// Datagram indices, reused from burst to burst.
    order: Vec<usize>,
    singles: Vec<usize>,
    metrics: Arc<DeliveryCounters>,
    /// Refused datagrams, told at most once per [`FAILURE_LOG_EVERY`].
    failures: Throttle,
    /// Makes the kernel's answer to a mode this error, to exercise the fallbacks.
    #[cfg(test)]
    pub(crate) refuse: Vec<(Mode, Errno)>,
}

impl UdpBatch {
    /// Starts with GSO; falls back as the kernel answers.
    pub fn new(metrics: Arc<DeliveryCounters>) -> UdpBatch {
        UdpBatch {
            mode: Mode::Gso,
            gso_limit: usize::MAX,
            order: Vec::new(),
            singles: Vec::new(),
            metrics,
            failures: Throttle::new(FAILURE_LOG_EVERY),
            #[cfg(test)]
            refuse: Vec::new(),
        }
    }

    /// The way datagrams are sent now.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Sends every datagram of `out` to the socket's peer.
    pub async fn send(&mut self, socket: &UdpSocket, out: &Datagrams) -> Sent {
        let mut done = Sent::default();
        let mut order = std::mem::take(&mut self.order);
        let mut singles = std::mem::take(&mut self.singles);
        order.clear();
        singles.clear();
        order.extend(0..out.len());
        if self.mode == Mode::Gso {
            order.sort_unstable_by_key(|&i| out.get(i).len());
            let mut start = 0;
            while start < order.len() {
                let (end, size) = group(out, &order, start, self.gso_limit);
                let members = &order[start..end];
                if members.len() < 2 || self.mode != Mode::Gso {
                    singles.extend_from_slice(members);
                } else {
                    match self.gso(socket, out, members, size).await {
                        Ok(_) => {
                            done.sent += members.len();
                            // Let requests run between calls: the daemon gets time to read.
                            tokio::task::yield_now().await;
                        }
                        Err(e) if self.refused_gso(&e, size) => singles.extend_from_slice(members),
                        Err(e) => {
                            done.failed += members.len();
                            self.refused(&e, members.len());
                        }
                    }
                }
                start = end;
            }
            std::mem::swap(&mut order, &mut singles);
        }
        self.each(socket, out, &order, &mut done).await;
        self.order = order;
        self.singles = singles;
        done
    }

    /// Whether `e` means GSO cannot carry groups this large (then it is left for them, or for all).
    fn refused_gso(&mut self, e: &io::Error, size: usize) -> bool {
        let errno = e.raw_os_error().map(Errno::from_raw);
        let too_large = matches!(errno, Some(Errno::EINVAL | Errno::EMSGSIZE)) && size > SMALL_GSO;
        if too_large {
            self.gso_limit = self.gso_limit.min(size);
            tracing::debug!(size, error = %e, "the route refuses GSO this large; larger groups go by sendmmsg");
        } else if refusal(e) {
            self.mode = Mode::Mmsg;
            tracing::info!(error = %e, "the kernel refuses UDP GSO; sending segments with sendmmsg");
        } else {
            return false;
        }
        self.metrics.gso_fallbacks.fetch_add(1, Relaxed);
        true
    }

    /// Tells of datagrams the kernel refused: a warning at most once per [`FAILURE_LOG_EVERY`].
    fn refused(&mut self, e: &io::Error, datagrams: usize) {
        match self.failures.count(datagrams as u64) {
            Some(since) => tracing::warn!(
                error = %e,
                datagrams = since,
                "cannot send segments to the daemon; each is counted in xray_sidecar_daemon_send_errors_total"
            ),
            None => tracing::debug!(error = %e, datagrams, "cannot send segments"),
        }
    }

    /// Sends the listed datagrams each on its own: by `sendmmsg`, or one call each.
    async fn each(&mut self, socket: &UdpSocket, out: &Datagrams, mut rest: &[usize], done: &mut Sent) {
        while let Some(&first) = rest.first() {
            if self.mode != Mode::Plain && rest.len() > 1 {
                let chunk = &rest[..rest.len().min(MMSG_BATCH)];
                match self.mmsg(socket, out, chunk).await {
                    Ok(n) => {
                        done.sent += n;
                        rest = &rest[n.clamp(1, chunk.len())..];
                    }
                    Err(e) if refusal(&e) => {
                        self.mode = Mode::Plain;
                        self.metrics.sendmmsg_fallbacks.fetch_add(1, Relaxed);
                        tracing::info!(error = %e, "the kernel refuses sendmmsg; sending one segment per call");
                    }
                    Err(e) => {
                        // The first datagram met an error (the daemon's port closed...): skip it.
                        done.failed += 1;
                        rest = &rest[1..];
                        self.refused(&e, 1);
                    }
                }
                continue;
            }
            let datagram = out.get(first);
            match self.io(socket, Mode::Plain, |fd| send(fd, datagram, MsgFlags::empty())).await {
                Ok(_) => done.sent += 1,
                Err(e) => {
                    done.failed += 1;
                    self.refused(&e, 1);
                }
            }
            rest = &rest[1..];
        }
    }

    /// One `sendmsg` whose `UDP_SEGMENT` cuts it into the listed datagrams, all but the last padded
    /// to `size` (the last is the longest, or shorter, which GSO allows).
    async fn gso(&self, socket: &UdpSocket, out: &Datagrams, members: &[usize], size: usize) -> io::Result<usize> {
        let mut iov = Vec::with_capacity(members.len() * 2);
        for (k, &i) in members.iter().enumerate() {
            let datagram = out.get(i);
            iov.push(IoSlice::new(datagram));
            if k + 1 < members.len() && datagram.len() < size {
                iov.push(IoSlice::new(&SPACES[..size - datagram.len()]));
            }
        }
        let segment = u16::try_from(size).map_err(|_| io::Error::from(Errno::EMSGSIZE))?;
        let cmsg = [ControlMessage::UdpGsoSegments(&segment)];
        self.io(socket, Mode::Gso, |fd| sendmsg::<SockaddrStorage>(fd, &iov, &cmsg, MsgFlags::empty(), None)).await
    }

    /// One `sendmmsg` of the listed datagrams; how many the kernel took.
    async fn mmsg(&self, socket: &UdpSocket, out: &Datagrams, members: &[usize]) -> io::Result<usize> {
        let slices: Vec<[IoSlice<'_>; 1]> = members.iter().map(|&i| [IoSlice::new(out.get(i))]).collect();
        let addrs = vec![None::<SockaddrStorage>; slices.len()];
        self.io(socket, Mode::Mmsg, |fd| {
            // Built per call: the headers hold raw pointers, so they may not live across an await.
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(slices.len(), None);
            let no_cmsg: [ControlMessage<'_>; 0] = [];
            sendmmsg(fd, &mut headers, &slices, &addrs, no_cmsg, MsgFlags::empty()).map(|sent| sent.count())
        })
        .await
    }

    /// Runs a non-blocking send once the socket is writable, waiting again while the kernel's
    /// buffer is full.
    async fn io<T>(
        &self,
        socket: &UdpSocket,
        mode: Mode,
        mut call: impl FnMut(RawFd) -> nix::Result<T>,
    ) -> io::Result<T> {
        #[cfg(test)]
        if let Some((_, errno)) = self.refuse.iter().find(|(m, _)| *m == mode) {
            return Err(io::Error::from(*errno));
        }
        let _ = mode;
        let fd = socket.as_raw_fd();
        loop {
            socket.writable().await?;
            match socket.try_io(Interest::WRITABLE, || call(fd).map_err(io::Error::from)) {
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
                result => {
                    if result.is_ok() {
                        self.metrics.datagram_send_calls.fetch_add(1, Relaxed);
                    }
                    return result;
                }
            }
        }
    }
}

/// The end (in `order`) and the GSO size of the group that starts at `start`: datagrams whose
/// lengths are within [`MAX_PAD`] of the first, at most [`MAX_SEGMENTS`] and [`MAX_SEND`] bytes,
/// shorter than `limit`. `order` is sorted by length.
fn group(out: &Datagrams, order: &[usize], start: usize, limit: usize) -> (usize, usize) {
    let first = out.get(order[start]).len();
    let (mut end, mut size) = (start + 1, first);
    while end < order.len() && end - start < MAX_SEGMENTS {
        let len = out.get(order[end]).len();
        if len - first > MAX_PAD || len >= limit || (end - start + 1) * len > MAX_SEND {
            break;
        }
        (end, size) = (end + 1, len);
    }
    if first >= limit { (start + 1, first) } else { (end, size) }
}

/// Whether an error means the kernel does not offer this way of sending (rather than that this
/// one send failed).
fn refusal(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::EINVAL | Errno::EIO | Errno::ENOPROTOOPT | Errno::EOPNOTSUPP | Errno::ENOSYS)
    )
}

#[cfg(test)]
#[path = "udp_batch_tests.rs"]
mod tests;
