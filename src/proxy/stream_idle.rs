//! The limit on a response that stops moving (`--stream-idle-timeout`): an upstream that sends a
//! head, then part of a body, then nothing, without closing, would otherwise hold the client's
//! request, its slot of the connection limit and its upstream connection for ever, and the
//! exchange's record would never be sent. Once nothing has passed either way for the timeout (no
//! frame of the response, and no frame of a request body still on its way, as a streaming call's
//! client may be the only one talking), the body fails: the record says so, as the upstream's
//! fault, and the client's response breaks off as it would if the upstream had closed (a gRPC call
//! gets its status in trailers). Envoy cuts streams the same way after 5 minutes, its default and
//! ours; long polls and server-sent events that are quiet longer need a higher limit, or 0.
//!
//! Nothing is armed while frames come as fast as they are asked for, which is every small
//! response (its body arrives with its head): the timer is made the first time the upstream keeps
//! the body waiting, and then each frame only notes the time; the timer, when it fires, looks at
//! when things last moved and waits on if they did. A client that stops taking its response is
//! another matter: the body is then not asked for at all, and the client's connection notices
//! (see `idle`), or for HTTP/2 the stream's task (see `client_wait`, which each frame tells).

use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;
use std::fmt;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

use super::body_progress::{self, Progress};
use super::client_wait;
use crate::BoxError;

/// A response body failed for having moved nothing for `limit`.
#[derive(Debug)]
pub struct Stalled {
    limit: Duration,
}

impl fmt::Display for Stalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the stream was idle for {:?} (--stream-idle-timeout): nothing came from the upstream", self.limit)
    }
}

impl std::error::Error for Stalled {}

/// `--stream-idle-timeout`, to the millisecond (at most 49 days, at least 1 ms): made once, as
/// the configuration is read, and small, as every response carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit(NonZeroU32);

impl Limit {
    /// `limit`, rounded down to the millisecond.
    pub fn new(limit: Duration) -> Self {
        let ms = u32::try_from(limit.as_millis()).unwrap_or(u32::MAX);
        Limit(NonZeroU32::new(ms).unwrap_or(NonZeroU32::MIN))
    }

    fn duration(self) -> Duration {
        Duration::from_millis(self.0.get().into())
    }
}

/// A response body that fails once nothing has moved for its limit.
#[pin_project]
#[derive(Debug)]
pub struct StreamIdle<B> {
    #[pin]
    inner: B,
    /// Made the first time the body keeps the client waiting (boxed: most bodies never do).
    timing: Option<Pin<Box<Timing>>>,
    /// `None`: a pass-through.
    limit: Option<Limit>,
    /// The request body, when one was still to be sent with the request.
    request: Option<Arc<Progress>>,
}

/// The timer of a body that has kept the client waiting.
#[pin_project]
#[derive(Debug)]
struct Timing {
    #[pin]
    sleep: Sleep,
    /// When a frame last passed.
    last: Instant,
}

impl<B> StreamIdle<B> {
    /// `inner`, failing once nothing of it (nor of the request body `request`) has moved for
    /// `limit`.
    pub fn new(inner: B, limit: Option<Limit>, request: Option<Arc<Progress>>) -> Self {
        StreamIdle { inner, timing: None, limit, request }
    }
}

impl<B> Body for StreamIdle<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let mut this = self;
        let polled = this.as_mut().poll_timed(cx);
        let data = matches!(&polled, Poll::Ready(Some(Ok(frame))) if frame.is_data());
        client_wait::note(data, this.request.as_ref());
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> StreamIdle<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    /// The next frame, or the failure once nothing has moved for the limit.
    fn poll_timed(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            if let Some(timing) = this.timing.as_mut() {
                *timing.as_mut().project().last = Instant::now();
            }
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        let Some(limit) = this.limit.map(Limit::duration) else {
            return Poll::Pending;
        };
        let timing = this.timing.get_or_insert_with(|| {
            let last = Instant::now();
            Box::pin(Timing { sleep: tokio::time::sleep_until(last + limit), last })
        });
        let timing = timing.as_mut().project();
        ready!(body_progress::poll_quiet(timing.sleep, cx, *timing.last, this.request.as_deref(), limit));
        Poll::Ready(Some(Err(Box::new(Stalled { limit }))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::BodyExt;
    use std::collections::VecDeque;

    /// Yields a frame each time one of `at` (offsets from its start) has passed; ends after the
    /// last.
    struct Timed {
        start: Instant,
        at: VecDeque<Duration>,
        sleep: Pin<Box<Sleep>>,
    }

    impl Timed {
        fn new(at: &[u64]) -> Self {
            let start = Instant::now();
            Timed {
                start,
                at: at.iter().map(|ms| Duration::from_millis(*ms)).collect(),
                sleep: Box::pin(tokio::time::sleep_until(start)),
            }
        }
    }

    impl Body for Timed {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            let Some(next) = self.at.front().copied() else { return Poll::Ready(None) };
            let at = self.start + next;
            if self.sleep.deadline() != at {
                self.sleep.as_mut().reset(at);
            }
            ready!(self.sleep.as_mut().poll(cx));
            self.at.pop_front();
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"x")))))
        }
    }

    /// The bytes read before the body ended, whether it failed, and when.
    async fn drain<B: Body<Data = Bytes, Error = BoxError> + Unpin>(mut body: B) -> (usize, Option<String>, Duration) {
        let start = Instant::now();
        let mut bytes = 0;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => bytes += f.into_data().map_or(0, |d| d.len()),
                Err(e) => return (bytes, Some(e.to_string()), start.elapsed()),
            }
        }
        (bytes, None, start.elapsed())
    }

    #[test]
    fn a_limit_keeps_its_milliseconds_at_least_one_and_at_most_49_days() {
        assert_eq!(Limit::new(Duration::from_secs(300)).duration(), Duration::from_secs(300));
        assert_eq!(Limit::new(Duration::from_micros(1_500)).duration(), Duration::from_millis(1));
        assert_eq!(Limit::new(Duration::from_micros(10)).duration(), Duration::from_millis(1));
        assert_eq!(Limit::new(Duration::from_secs(u64::MAX)).duration(), Duration::from_millis(u32::MAX.into()));
    }

    #[tokio::test(start_paused = true)]
    async fn frames_that_keep_coming_are_never_cut_however_long_the_body() {
        let body =
            StreamIdle::new(Timed::new(&[0, 900, 1_800, 2_700, 3_600]), Some(Limit::new(Duration::from_secs(1))), None);
        assert_eq!(drain(body).await, (5, None, Duration::from_millis(3_600)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_fails_at_the_limit_after_its_last_frame() {
        let body = StreamIdle::new(Timed::new(&[0, 500, 10_000]), Some(Limit::new(Duration::from_secs(1))), None);
        let (bytes, failed, after) = drain(body).await;
        assert_eq!(bytes, 2);
        assert!(failed.is_some_and(|m| m.contains("idle for 1s")));
        assert_eq!(after, Duration::from_millis(1_500), "the limit counts from the last frame");
    }

    #[tokio::test(start_paused = true)]
    async fn no_limit_waits_as_long_as_the_upstream() {
        let body = StreamIdle::new(Timed::new(&[0, 100_000]), None, None);
        assert_eq!(drain(body).await, (2, None, Duration::from_secs(100)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_body_still_moving_keeps_a_quiet_response_alive() {
        // The client sends a frame every 600 ms for 3 s; the response answers only at the end.
        let request = body_progress::moving(Duration::from_millis(600), 5);
        let body =
            StreamIdle::new(Timed::new(&[0, 3_500, 10_000]), Some(Limit::new(Duration::from_secs(1))), Some(request));
        let (bytes, failed, after) = drain(body).await;
        assert_eq!(bytes, 2, "the frame at 3.5 s came while the request still moved (its last at 3 s)");
        assert!(failed.is_some());
        assert_eq!(after, Duration::from_millis(4_500));
    }
}
