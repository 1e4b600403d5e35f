//! The request body of a gRPC call, passed through frame by frame while its messages are counted.

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use super::grpc::{MessageCounter, SentCount};

/// A request body that counts gRPC messages into a [`SentCount`] when it has one, and is a plain
/// pass-through otherwise.
#[pin_project]
#[derive(Debug)]
pub struct CountMessages<B> {
    /// `None`: no body at all (a request sent again, see `pool`).
    #[pin]
    inner: Option<B>,
    counter: Option<(MessageCounter, SentCount)>,
}

impl<B> CountMessages<B> {
    /// Wraps `inner`, counting into `sent` if given.
    pub fn new(inner: B, sent: Option<SentCount>) -> Self {
        CountMessages { inner: Some(inner), counter: sent.map(|s| (MessageCounter::default(), s)) }
    }

    /// No body: what a copy of a request that had none carries.
    pub fn empty() -> Self {
        CountMessages { inner: None, counter: None }
    }
}

impl<B: Body> Body for CountMessages<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else { return Poll::Ready(None) };
        let frame = ready!(inner.poll_frame(cx));
        if let (Some((counter, sent)), Some(Ok(f))) = (this.counter.as_mut(), &frame) {
            if let Some(data) = f.data_ref() {
                let before = counter.count;
                counter.feed(data.chunk());
                sent.add(counter.count - before);
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
