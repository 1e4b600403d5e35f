//! `--stream-idle-timeout` for an HTTP/2 client that stops taking its response.
//!
//! An HTTP/1.1 client that stops reading blocks the proxy's writes, which its connection's
//! once-a-second look notices (see `idle`). An HTTP/2 client stops otherwise: it no longer opens
//! the stream's flow-control window, hyper then waits for window before asking the response body
//! for anything more, and the connection's pings keep it looking alive. Its stream would hold its
//! slot of the connection limit's budget and an upstream connection for as long as the client
//! liked; a few hundred such streams, and every other client is answered 503. Envoy resets such a
//! stream at its stream idle timeout; so does the proxy.
//!
//! hyper polls each HTTP/2 stream (its service call, then the piping of the response body) on a
//! task of its own, which it spawns through the executor it was built with: [`StreamExecutor`]
//! spawns each inside [`ClientWait`]. While that task is polled, the response body ([`note`], from
//! `stream_idle`) says whether it was asked for a frame and whether it handed out data; a stream
//! whose body handed out data and has not been asked for more since waits on its client. Once it
//! has waited for the limit, the task is dropped, which resets the stream (`CANCEL`) and ends its
//! record as the client's leaving; the connection and its other streams go on. A request body
//! still on its way keeps the stream alive, as it does the response's own timer: a streaming call's
//! client that is still sending is not idle.

use pin_project::pin_project;
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

use super::body_progress::{self, Progress};

/// What the response body of the HTTP/2 stream being polled did during that poll.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    /// It was asked for a frame.
    asked: bool,
    /// Its last answer was data.
    handed_out: bool,
    /// The stream does not know yet how far its request body has come.
    wants_request: bool,
}

thread_local! {
    /// Set while a [`ClientWait`] polls its stream; `None` elsewhere (HTTP/1.1 bodies, which pay
    /// one read of it). hyper hands neither the body nor the stream's task a way to the other: the
    /// poll, which runs on one thread from the task down to the body, is where they meet.
    static SEEN: Cell<Option<Seen>> = const { Cell::new(None) };
    /// The request body still on its way when the response began, handed over once the stream
    /// wants it.
    static REQUEST: Cell<Option<Arc<Progress>>> = const { Cell::new(None) };
}

/// Notes that the response body was asked for a frame and whether it answered with data, and the
/// request body it is answering, if one was still on its way: heard only while an HTTP/2 stream's
/// task is polled.
pub fn note(handed_out: bool, request: Option<&Arc<Progress>>) {
    SEEN.with(|cell| {
        if let Some(seen) = cell.get() {
            if handed_out && seen.wants_request {
                REQUEST.with(|r| r.set(request.cloned()));
            }
            cell.set(Some(Seen { asked: true, handed_out, wants_request: seen.wants_request }));
        }
    });
}

/// The executor of the HTTP/2 server's streams: each spawned inside [`ClientWait`] when there is a
/// limit.
#[derive(Clone, Copy, Debug)]
pub struct StreamExecutor {
    limit: Option<Duration>,
}

impl StreamExecutor {
    /// Streams cut once they have waited on their client for `limit`; `None`: never.
    pub fn new(limit: Option<Duration>) -> Self {
        StreamExecutor { limit }
    }
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        match self.limit {
            None => drop(tokio::spawn(stream)),
            Some(limit) => drop(tokio::spawn(ClientWait::new(stream, limit))),
        }
    }
}

/// An HTTP/2 stream's task, dropped once its response has waited on the client for the limit.
#[pin_project]
#[derive(Debug)]
pub struct ClientWait<F> {
    #[pin]
    stream: F,
    limit: Duration,
    /// When the response body last handed out data without being asked for more since.
    waiting_since: Option<Instant>,
    /// Made the first time the stream waits on its client (boxed: most streams never do).
    timer: Option<Pin<Box<Sleep>>>,
    /// The request body, when one was still on its way as the response began (asked for the first
    /// time the response handed out data).
    request: Option<Arc<Progress>>,
    /// The request has been asked for.
    asked_for_request: bool,
}

impl<F> ClientWait<F> {
    fn new(stream: F, limit: Duration) -> Self {
        ClientWait { stream, limit, waiting_since: None, timer: None, request: None, asked_for_request: false }
    }
}

impl<F: Future<Output = ()>> Future for ClientWait<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let wants_request = !*this.asked_for_request;
        SEEN.with(|seen| seen.set(Some(Seen { wants_request, ..Seen::default() })));
        let done = this.stream.poll(cx);
        let seen = SEEN.with(|seen| seen.replace(None)).unwrap_or_default();
        // Taken whenever it may have been handed over, so that none is left behind.
        let request = if wants_request { REQUEST.with(Cell::take) } else { None };
        if done.is_ready() {
            return Poll::Ready(());
        }
        if seen.asked {
            *this.waiting_since = seen.handed_out.then(Instant::now);
            if seen.handed_out && wants_request {
                *this.asked_for_request = true;
                *this.request = request;
            }
        }
        // A timer left from an earlier wait may still fire: the stream is then looked at again. A
        // limit beyond what the clock can count never strikes.
        let limit = *this.limit;
        let Some((since, first)) = this.waiting_since.and_then(|since| Some((since, since.checked_add(limit)?))) else {
            return Poll::Pending;
        };
        let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(first)));
        ready!(body_progress::poll_quiet(timer.as_mut(), cx, since, this.request.as_deref(), limit));
        tracing::debug!(
            ?limit,
            "reset an HTTP/2 stream whose client took nothing of its response for the stream idle timeout"
        );
        Poll::Ready(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    fn watched<F: Future<Output = ()>>(stream: F) -> ClientWait<F> {
        ClientWait::new(stream, Duration::from_secs(5))
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_whose_data_waits_on_its_client_ends_at_the_limit() {
        let mut first = true;
        // Its body hands out data once, and is never asked for more.
        let stuck = poll_fn(move |_| {
            if std::mem::take(&mut first) {
                note(true, None);
            }
            Poll::Pending
        });
        let started = Instant::now();
        watched(stuck).await;
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_body_still_coming_keeps_a_stream_waiting_on_its_client_alive() {
        // The client sends a frame every 4 s for 20 s, and takes nothing of the response.
        let request = body_progress::moving(Duration::from_secs(4), 5);
        let mut first = true;
        let stuck = poll_fn(move |_| {
            if std::mem::take(&mut first) {
                note(true, Some(&request));
            }
            Poll::Pending
        });
        let started = Instant::now();
        watched(stuck).await;
        // Cut 5 s after the last frame of the request.
        assert_eq!(started.elapsed(), Duration::from_secs(25));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_waiting_on_its_upstream_or_moving_is_left_alone() {
        // Its body was asked and had nothing yet: the upstream's wait, which `stream_idle` times.
        let upstream = poll_fn(|_| {
            note(false, None);
            Poll::<()>::Pending
        });
        assert!(tokio::time::timeout(Duration::from_secs(60), watched(upstream)).await.is_err());
        // Its body hands out data every 4 s, each time asked again: the client keeps taking it.
        let mut tick = tokio::time::interval(Duration::from_secs(4));
        let moving = poll_fn(move |cx| {
            while tick.poll_tick(cx).is_ready() {
                note(true, None);
            }
            Poll::<()>::Pending
        });
        assert!(tokio::time::timeout(Duration::from_secs(60), watched(moving)).await.is_err());
        // Heard nothing outside a stream's poll.
        note(true, None);
        assert!(SEEN.with(Cell::get).is_none());
    }
}
