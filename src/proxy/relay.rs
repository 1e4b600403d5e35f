//! Bytes copied both ways between two connections until both are done, or until the shutdown's
//! grace period is over: what every tunnel and upgraded connection runs.

use std::io;
use tokio::io::{AsyncRead, AsyncWrite};
use xray_lifecycle::Held;

/// `copy_bidirectional` until both sides are done or `held` is cut at the end of the shutdown's
/// grace period, which ends the connection as broken.
pub async fn copy_until_cut<A, B>(a: &mut A, b: &mut B, held: &Held) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    tokio::select! {
        copied = tokio::io::copy_bidirectional(a, b) => copied,
        () = held.cut() => Err(io::Error::other("cut at the end of the shutdown's grace period")),
    }
}
