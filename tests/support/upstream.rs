//! A real HTTP/1.1 + HTTP/2 server standing in for the application behind the proxy.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

type Body = BoxBody<Bytes, std::io::Error>;

/// A running upstream.
pub struct Upstream {
    pub addr: SocketAddr,
}

impl Upstream {
    /// Starts serving on a free loopback port. Routes: `/status/{code}`, `/stream/{bytes}`,
    /// `/slow/{ms}`, `/trailers`, `/ws` (upgrade, then echo), `/forever`; anything else 200 "ok".
    /// Every response says what the upstream received in `x-saw-trace`, `x-saw-xff`, `x-saw-proto`,
    /// `x-saw-upgrade`.
    pub async fn start() -> Upstream {
        Upstream::start_at([127, 0, 0, 1].into()).await
    }

    /// Like `start`, on a free port of `ip` (another namespace may have to reach it).
    pub async fn start_at(ip: std::net::IpAddr) -> Upstream {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(handle);
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream { addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn full(text: impl Into<Bytes>) -> Body {
    Full::new(text.into()).map_err(|never: Infallible| match never {}).boxed()
}

fn streamed(rx: mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>) -> Body {
    let stream = futures_stream(rx);
    BodyExt::boxed(StreamBody::new(stream))
}

/// Adapts a channel to a `Stream` without a stream crate.
fn futures_stream(
    rx: mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, std::io::Error>> {
    struct S(mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>);
    impl futures_core::Stream for S {
        type Item = Result<Frame<Bytes>, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            self.0.poll_recv(cx)
        }
    }
    S(rx)
}

async fn handle(mut req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let seen = |name: &str| req.headers().get(name).cloned();
    let (trace, xff, proto) = (seen("x-amzn-trace-id"), seen("x-forwarded-for"), seen("x-forwarded-proto"));
    let upgrade = seen("upgrade");
    let path = req.uri().path().to_owned();
    let mut parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    parts.resize(2, "");
    let mut res = match (parts[0], parts[1]) {
        ("status", code) => {
            let code = code.parse().unwrap_or(200);
            let mut r = Response::new(full(format!("status {code}\n")));
            *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
            r
        }
        ("stream", n) => {
            let total: usize = n.parse().unwrap_or(0);
            let (tx, rx) = mpsc::channel(4);
            tokio::spawn(async move {
                let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                let mut left = total;
                while left > 0 {
                    let n = left.min(chunk.len());
                    left -= n;
                    if left == 0 {
                        // The last byte comes late, so a segment that ended early would show it.
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    if tx.send(Ok(Frame::data(chunk.slice(..n)))).await.is_err() {
                        return;
                    }
                }
            });
            Response::new(streamed(rx))
        }
        ("big-head", kib) => {
            let mut r = Response::new(full("big head\n"));
            let value = "h".repeat(kib.parse::<usize>().unwrap_or(0) * 1024);
            r.headers_mut().insert("x-big", HeaderValue::from_str(&value).unwrap());
            r
        }
        ("fields", n) => {
            let mut r = Response::new(full("many fields\n"));
            for i in 0..n.parse::<usize>().unwrap_or(0) {
                r.headers_mut().append("x-field", HeaderValue::from(i));
            }
            r
        }
        ("drain", ms) => {
            // Reads the whole request body, then answers after `ms`.
            let body = req.body_mut().collect().await.map(|b| b.to_bytes().len());
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
            match body {
                Ok(n) => Response::new(full(format!("{n} bytes\n"))),
                Err(_) => Response::builder().status(400).body(full("body broke off\n")).unwrap(),
            }
        }
        ("slow", ms) => {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
            Response::new(full("slow\n"))
        }
        ("trailers", _) => {
            let (tx, rx) = mpsc::channel(4);
            tokio::spawn(async move {
                let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"hello")))).await;
                let mut trailers = HeaderMap::new();
                trailers.insert("grpc-status", HeaderValue::from_static("0"));
                trailers.insert("grpc-message", HeaderValue::from_static("fine"));
                let _ = tx.send(Ok(Frame::trailers(trailers))).await;
            });
            let mut r = Response::new(streamed(rx));
            r.headers_mut().insert("content-type", HeaderValue::from_static("application/grpc"));
            r
        }
        ("forever", _) => {
            let (tx, rx) = mpsc::channel(1);
            tokio::spawn(async move {
                while tx.send(Ok(Frame::data(Bytes::from(vec![b'y'; 16 * 1024])))).await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
            Response::new(streamed(rx))
        }
        ("ws", _) => {
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(up) = on_upgrade.await else { return };
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            let mut r = Response::new(full(Bytes::new()));
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            r.headers_mut().insert("connection", HeaderValue::from_static("upgrade"));
            r.headers_mut().insert("upgrade", HeaderValue::from_static("websocket"));
            r
        }
        _ => Response::new(full("ok\n")),
    };
    for (name, v) in [("x-saw-trace", trace), ("x-saw-xff", xff), ("x-saw-proto", proto), ("x-saw-upgrade", upgrade)] {
        if let Some(v) = v {
            res.headers_mut().insert(name, v);
        }
    }
    Ok(res)
}
