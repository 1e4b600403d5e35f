//! A request body on its way to the upstream, passed through frame by frame: the messages of a
//! gRPC call are counted, and the body's progress is noted for the wait for the response.

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use super::body_progress::Progress;
use super::grpc::{MessageCounter, SentCount};

/// A request body that counts gRPC messages into a [`SentCount`] when it has one, and notes its
/// frames and its end into a [`Progress`] when it has one; a plain pass-through otherwise.
#[pin_project]
#[derive(Debug)]
pub struct CountMessages<B> {
    /// `None`: no body at all (a request sent again, see `pool`).
    #[pin]
    inner: Option<B>,
    counter: Option<(MessageCounter, SentCount)>,
    progress: Option<Arc<Progress>>,
}

impl<B> CountMessages<B> {
    /// Wraps `inner`, counting into `sent` and noting into `progress` if given.
    pub fn new(inner: B, sent: Option<SentCount>, progress: Option<Arc<Progress>>) -> Self {
        CountMessages { inner: Some(inner), counter: sent.map(|s| (MessageCounter::default(), s)), progress }
    }

    /// No body: what a copy of a request that had none carries.
    pub fn empty() -> Self {
        CountMessages { inner: None, counter: None, progress: None }
    }
}

impl<B: Body> Body for CountMessages<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let Some(mut inner) = this.inner.as_pin_mut() else { return Poll::Ready(None) };
        let frame = ready!(inner.as_mut().poll_frame(cx));
        if let (Some((counter, sent)), Some(Ok(f))) = (this.counter.as_mut(), &frame) {
            if let Some(data) = f.data_ref() {
                let before = counter.count;
                counter.feed(data.chunk());
                sent.add(counter.count - before);
            }
        }
        if let Some(progress) = this.progress {
            // hyper stops polling a body that says it has ended, so its end may come with its
            // last frame rather than as a `None` of its own.
            match &frame {
                None => progress.finished(),
                Some(Ok(_)) if inner.is_end_stream() => progress.finished(),
                Some(Ok(_)) => progress.moved(),
                Some(Err(_)) => {}
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}
