//! The response body wrapper: streams frames through untouched and reports, exactly once, how the
//! body ended: complete, broken by the upstream, or abandoned by the client. A failure is passed on
//! unless the end hook gives trailers to end the body with instead (a gRPC call's status).

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project::{pin_project, pinned_drop};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

/// How a response body ended.
#[derive(Debug)]
pub enum End {
    /// Every frame was handed to the client's connection.
    Complete,
    /// The upstream's body failed; the message says how.
    Failed(String),
    /// The body was dropped before its end: the client went away.
    Aborted,
}

/// Told once when a [`TraceBody`] ends, with the data bytes that went through; and, on the way,
/// of each data chunk and the trailers (for protocols, such as gRPC, whose outcome is in them).
pub trait OnEnd {
    /// Called exactly once.
    fn on_end(self, bytes: u64, end: End);

    /// Called with each data chunk as it passes (it must not be kept).
    fn on_data(&mut self, _chunk: &[u8]) {}

    /// Called with the trailers as they pass.
    fn on_trailers(&mut self, _trailers: &http::HeaderMap) {}

    /// Called when the body fails after `bytes`: trailers that end it in the failure's place, or
    /// `None` to pass the failure on (the client's stream or connection then breaks off).
    fn trailers_for_failure(
        &mut self,
        _bytes: u64,
        _why: &(dyn std::error::Error + 'static),
    ) -> Option<http::HeaderMap> {
        None
    }
}

/// The error of the bodies wrapped: hyper's, or the proxy's own.
type BodyError = dyn std::error::Error + Send + Sync;

/// A body that counts data bytes and calls its [`OnEnd`] when it is over.
#[pin_project(PinnedDrop)]
pub struct TraceBody<B, E: OnEnd> {
    #[pin]
    inner: B,
    bytes: u64,
    /// An empty body may never be polled before it is dropped: that is its end, not an abort.
    empty: bool,
    on_end: Option<E>,
}

impl<B: Body, E: OnEnd> TraceBody<B, E> {
    /// Wraps `inner`; `on_end` of `None` makes the wrapper a pass-through.
    pub fn new(inner: B, on_end: Option<E>) -> Self {
        TraceBody { empty: inner.is_end_stream(), inner, bytes: 0, on_end }
    }
}

impl<B, E> Body for TraceBody<B, E>
where
    B: Body,
    B::Error: AsRef<BodyError> + std::fmt::Display,
    E: OnEnd,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let end = match &frame {
            Some(Ok(f)) => {
                if let Some(data) = f.data_ref() {
                    *this.bytes += data.remaining() as u64;
                    if let Some(cb) = this.on_end.as_mut() {
                        cb.on_data(data.chunk());
                    }
                } else if let (Some(t), Some(cb)) = (f.trailers_ref(), this.on_end.as_mut()) {
                    cb.on_trailers(t);
                }
                // The connection may never poll again after the last frame (with an exact
                // Content-Length; after trailers, always the last frame, hyper's HTTP/1 server
                // does not), so the end is noticed here rather than on the next poll.
                (f.is_trailers() || this.inner.is_end_stream()).then_some(End::Complete)
            }
            Some(Err(e)) => {
                let (bytes, why) = (*this.bytes, e.as_ref());
                if let Some(trailers) = this.on_end.as_mut().and_then(|cb| cb.trailers_for_failure(bytes, why)) {
                    if let Some(cb) = this.on_end.take() {
                        cb.on_end(bytes, End::Failed(why.to_string()));
                    }
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                Some(End::Failed(e.to_string()))
            }
            None => Some(End::Complete),
        };
        if let Some(end) = end {
            if let Some(cb) = this.on_end.take() {
                cb.on_end(*this.bytes, end);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[pinned_drop]
impl<B, E: OnEnd> PinnedDrop for TraceBody<B, E> {
    fn drop(self: Pin<&mut Self>) {
        let this = self.project();
        if let Some(cb) = this.on_end.take() {
            let end = if *this.empty { End::Complete } else { End::Aborted };
            cb.on_end(*this.bytes, end);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<(u64, String)>>>);

    impl OnEnd for Seen {
        fn on_end(self, bytes: u64, end: End) {
            self.0.lock().expect("lock").push((bytes, format!("{end:?}")));
        }
    }

    #[tokio::test]
    async fn reports_completion_once_with_the_byte_count() {
        let seen = Seen::default();
        let full = Full::new(Bytes::from_static(b"hello")).map_err(|never| -> BoxError { match never {} });
        let body = TraceBody::new(full, Some(seen.clone()));
        let collected = body.collect().await.expect("body").to_bytes();
        assert_eq!(&collected[..], b"hello");
        assert_eq!(*seen.0.lock().expect("lock"), vec![(5, "Complete".to_owned())]);
    }

    #[tokio::test]
    async fn a_body_dropped_midway_is_aborted_and_an_unpolled_empty_one_complete() {
        let seen = Seen::default();
        let frames = chunks(vec![Ok(Bytes::from_static(b"abc")), Ok(Bytes::from_static(b"def"))]);
        let mut body = TraceBody::new(frames, Some(seen.clone()));
        let first = body.frame().await.expect("frame").expect("ok");
        assert_eq!(first.into_data().ok().as_deref(), Some(&b"abc"[..]));
        drop(body);
        drop(TraceBody::new(Full::new(Bytes::new()), Some(seen.clone())));
        assert_eq!(*seen.0.lock().expect("lock"), vec![(3, "Aborted".to_owned()), (0, "Complete".to_owned())]);
    }

    #[tokio::test]
    async fn an_upstream_error_is_reported_as_failed() {
        let seen = Seen::default();
        let frames = chunks(vec![Ok(Bytes::from_static(b"ab")), Err(std::io::Error::other("reset").into())]);
        let body = TraceBody::new(frames, Some(seen.clone()));
        assert!(body.collect().await.is_err());
        assert_eq!(*seen.0.lock().expect("lock"), vec![(2, "Failed(\"reset\")".to_owned())]);
    }

    /// Ends a failed body with a trailer naming the failure.
    #[derive(Clone, Default)]
    struct Mends(Seen);

    impl OnEnd for Mends {
        fn on_end(self, bytes: u64, end: End) {
            self.0.on_end(bytes, end);
        }

        fn trailers_for_failure(
            &mut self,
            bytes: u64,
            why: &(dyn std::error::Error + 'static),
        ) -> Option<http::HeaderMap> {
            let mut t = http::HeaderMap::new();
            t.insert("x-failed", http::HeaderValue::from_str(&format!("{bytes} {why}")).ok()?);
            Some(t)
        }
    }

    #[tokio::test]
    async fn a_failure_may_be_ended_with_trailers_and_is_still_reported() {
        let mends = Mends::default();
        let frames = chunks(vec![Ok(Bytes::from_static(b"ab")), Err(std::io::Error::other("reset").into())]);
        let collected = TraceBody::new(frames, Some(mends.clone())).collect().await.expect("no error passed on");
        assert_eq!(collected.trailers().map(|t| &t["x-failed"]), Some(&http::HeaderValue::from_static("2 reset")));
        assert_eq!(*mends.0.0.lock().expect("lock"), vec![(2, "Failed(\"reset\")".to_owned())]);
    }

    #[tokio::test]
    async fn trailers_end_the_body_though_it_is_never_polled_again() {
        let seen = Seen::default();
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-checksum", http::HeaderValue::from_static("1"));
        let frames = Frames(vec![Ok(Frame::data(Bytes::from_static(b"ok"))), Ok(Frame::trailers(trailers))].into());
        let mut body = TraceBody::new(frames, Some(seen.clone()));
        assert!(body.frame().await.expect("frame").expect("ok").is_data());
        assert!(body.frame().await.expect("frame").expect("ok").is_trailers());
        drop(body);
        assert_eq!(*seen.0.lock().expect("lock"), vec![(2, "Complete".to_owned())]);
    }

    type BoxError = Box<BodyError>;

    /// A body that yields the given frames in order, then ends.
    struct Frames(std::collections::VecDeque<Result<Frame<Bytes>, BoxError>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.0.pop_front())
        }
    }

    /// A body of the given data chunks.
    fn chunks(items: Vec<Result<Bytes, BoxError>>) -> Frames {
        Frames(items.into_iter().map(|r| r.map(Frame::data)).collect())
    }
}
