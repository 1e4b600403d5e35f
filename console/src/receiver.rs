//! The UDP side: receives datagrams where the X-Ray daemon would, stores their documents, and
//! relays every datagram unchanged to a real daemon when asked.

use super::datagram;
use super::state::State;
use super::store::Inserted;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::UdpSocket;
use tracing::{debug, info, warn};
use xray_lifecycle::Stopped;

/// Room for the largest datagram: the daemon reads 64 KiB, so larger ones are lost there too.
const MAX_DATAGRAM: usize = 64 * 1024;
/// Kernel receive buffer asked for, so bursts from many emitters are not dropped before we read them.
const RECEIVE_BUFFER: usize = 4 * 1024 * 1024;

/// Binds the UDP socket with a large receive buffer.
pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // Best effort: the kernel caps the size at net.core.rmem_max.
    if let Err(e) = socket.set_recv_buffer_size(RECEIVE_BUFFER) {
        debug!(error = %e, "cannot enlarge the udp receive buffer");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// Relays datagrams to a real daemon.
#[derive(Debug)]
pub struct Forwarder {
    socket: UdpSocket,
    target: String,
    addr: SocketAddr,
}

impl Forwarder {
    /// Resolves `target` (`host:port`) and opens a socket to send to it.
    pub async fn new(target: &str) -> io::Result<Self> {
        let addr = resolve(target).await?;
        let local: SocketAddr = if addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
        let socket = UdpSocket::bind(local).await?;
        Ok(Self { socket, target: target.to_owned(), addr })
    }

    /// The address datagrams go to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn send(&mut self, datagram: &[u8]) -> io::Result<()> {
        if let Err(e) = self.socket.send_to(datagram, self.addr).await {
            // The daemon may have moved (a Service's address, a restarted pod): look the name up again.
            if let Ok(addr) = resolve(&self.target).await {
                self.addr = addr;
            }
            return Err(e);
        }
        Ok(())
    }
}

async fn resolve(target: &str) -> io::Result<SocketAddr> {
    tokio::net::lookup_host(target)
        .await?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{target} resolves to no address")))
}

/// Receives datagrams until `shutdown` turns true.
pub async fn run(socket: UdpSocket, mut forward: Option<Forwarder>, state: Arc<State>, mut stopped: Stopped) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (len, peer) = tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %e, "udp receive failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = stopped.wait() => break,
        };
        let data = &buf[..len];
        state.received.fetch_add(1, Ordering::Relaxed);
        if let Some(forward) = forward.as_mut() {
            match forward.send(data).await {
                Ok(()) => state.forwarded.fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    debug!(error = %e, target = %forward.target, "forwarding a datagram failed");
                    state.forward_errors.fetch_add(1, Ordering::Relaxed)
                }
            };
        }
        match datagram::parse(data) {
            Ok(received) => {
                let trace_id = received.document.trace_id.clone();
                let inserted = state.store().insert(received);
                if inserted == Inserted::TraceFull {
                    debug!(%trace_id, "trace is full, document dropped");
                } else {
                    state.accepted.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => {
                debug!(%peer, error = %e, len, "malformed datagram dropped");
                state.count_malformed(e.to_string());
            }
        }
    }
    info!("udp receiver stopped");
}
