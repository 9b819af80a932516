//! The eco-docker demo web server.
//!
//! [`run`] holds all of the serving logic and is driven in-process by the tests; `main.rs` only
//! parses the command line, binds the listener and turns SIGTERM/SIGINT into the shutdown future.
//!
//! Routes: `GET`/`HEAD /` answers [`BODY`], `GET`/`HEAD /healthz` answers `ok`, other methods on
//! those paths get 405 with an `allow` header, any other path gets 404. Malformed requests are
//! answered with 400 by hyper itself, which then closes only that connection.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

/// The body of `GET /`: 28 bytes of UTF-8, no trailing newline.
pub const BODY: &str = "Eco Docker Demo Running 🌱";

/// The body of `GET /healthz`.
pub const HEALTH_BODY: &str = "ok";

/// The port the server listens on unless `PORT` or `--port` says otherwise.
pub const DEFAULT_PORT: u16 = 5000;

/// Timeouts of the server; the defaults suit production, tests set short ones.
#[derive(Clone, Debug)]
pub struct Config {
    /// How long a client may take to send a complete request head.
    ///
    /// Hyper arms this timer whenever it starts waiting for a request head, that is on a new
    /// connection and again after every response on a keep-alive connection, so it is also the
    /// bound on how long a keep-alive connection may sit idle between requests.
    pub header_read_timeout: Duration,
    /// How long in-flight requests may take to finish after shutdown has been requested.
    pub drain_timeout: Duration,
    /// How long the accept loop pauses after an accept error such as EMFILE.
    pub accept_error_backoff: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(5),
            accept_error_backoff: Duration::from_millis(100),
        }
    }
}

/// How [`run`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Every connection finished before the drain timeout.
    Drained,
    /// The drain timeout elapsed with connections still open; they are dropped.
    DrainTimedOut,
}

/// Serves HTTP/1 on `listener` until `shutdown` completes, then drains.
///
/// When `shutdown` completes the listener is closed, idle keep-alive connections are closed at
/// once, and requests in flight may finish within [`Config::drain_timeout`].
///
/// There is no error to return: a failed accept (EMFILE, ENOBUFS, ...) is logged once per burst
/// and retried after [`Config::accept_error_backoff`], and a failed connection only affects its
/// own client.
pub async fn run(listener: TcpListener, shutdown: impl Future, config: &Config) -> Stopped {
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Without a timer hyper cannot enforce `header_read_timeout` (it panics when one is set).
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);

    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    // Set while a burst of accept errors is going on, so a burst is logged only once.
    let mut accept_failing = false;

    loop {
        // `biased` polls the listener first, so a connection whose handshake completed before the
        // shutdown signal is served instead of being reset when the listener closes.
        let accepted = tokio::select! {
            biased;
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => break,
        };
        match accepted {
            Ok((stream, _peer)) => {
                accept_failing = false;
                let conn = builder
                    .serve_connection(TokioIo::new(stream), hyper::service::service_fn(route));
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    // A failed connection (a parse error, a timeout, a reset) concerns only its
                    // own client, and per-request logs are unwanted, so the error is dropped.
                    let _ = conn.await;
                });
            }
            Err(err) if is_connection_error(&err) => {}
            Err(err) => {
                if !accept_failing {
                    log(format_args!(
                        "eco-service: accept failed, backing off: {err}"
                    ));
                    accept_failing = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(config.accept_error_backoff) => {}
                    _ = &mut shutdown => break,
                }
            }
        }
    }

    drop(listener);
    match tokio::time::timeout(config.drain_timeout, graceful.shutdown()).await {
        Ok(()) => Stopped::Drained,
        Err(_) => Stopped::DrainTimedOut,
    }
}

/// Writes one line to stderr.
///
/// Unlike `eprintln!`, which panics (and so aborts) when stderr is a closed pipe, a failed log
/// line is ignored: the server must keep serving.
pub fn log(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(io::stderr(), "{line}");
}

/// Errors that concern one connection that died in the backlog, not the listener.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

async fn route(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match req.uri().path() {
        "/" => BODY,
        "/healthz" => HEALTH_BODY,
        _ => return Ok(text(StatusCode::NOT_FOUND, "not found")),
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(response);
    }
    // Hyper omits the body of a response to HEAD but keeps its content-length.
    Ok(text(StatusCode::OK, body))
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Asks the server on `127.0.0.1:port` for `GET /healthz`, the whole exchange bounded by `timeout`.
///
/// This is the Docker HEALTHCHECK of images without a shell. It uses a blocking std socket rather
/// than hyper's client, which would add the client half of hyper to the binary for one request.
/// The address is built from [`std::net::Ipv4Addr::LOCALHOST`], so no name is ever resolved.
///
/// Returns why the server is not healthy.
pub fn health_check(port: u16, timeout: Duration) -> Result<(), String> {
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, SocketAddr, TcpStream};
    use std::time::Instant;

    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let remaining = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .ok_or_else(|| format!("no answer from {addr} within {timeout:?}"))
    };
    let mut stream = TcpStream::connect_timeout(&addr, remaining()?)
        .map_err(|err| format!("cannot connect to {addr}: {err}"))?;
    stream
        .set_write_timeout(Some(remaining()?))
        .and_then(|()| {
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        })
        .map_err(|err| format!("cannot send the request to {addr}: {err}"))?;

    // The answer is a few hundred bytes; anything longer than this is not our server.
    let mut response = Vec::with_capacity(512);
    let mut chunk = [0; 512];
    loop {
        stream
            .set_read_timeout(Some(remaining()?))
            .map_err(|err| format!("cannot read from {addr}: {err}"))?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) if response.len() + n <= 4096 => response.extend_from_slice(&chunk[..n]),
            Ok(_) => return Err(format!("the answer from {addr} is too long")),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(format!("cannot read the answer from {addr}: {err}")),
        }
    }

    let text = String::from_utf8_lossy(&response);
    let status_line = text.lines().next().unwrap_or_default();
    if !status_line.starts_with("HTTP/1.1 200 ") {
        return Err(format!("GET /healthz answered {status_line:?}"));
    }
    match text.split_once("\r\n\r\n") {
        Some((_, HEALTH_BODY)) => Ok(()),
        Some((_, body)) => Err(format!("GET /healthz answered 200 with body {body:?}")),
        None => Err("GET /healthz answered an incomplete response".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_28_bytes_without_newline() {
        assert_eq!(BODY.len(), 28);
        assert!(BODY.ends_with('\u{1F331}'));
    }

    #[test]
    fn only_listener_level_errors_back_off() {
        assert!(is_connection_error(
            &io::ErrorKind::ConnectionAborted.into()
        ));
        // EMFILE: the process is out of file descriptors, so the loop must pause, not spin.
        assert!(!is_connection_error(&io::Error::from_raw_os_error(24)));
    }
}
