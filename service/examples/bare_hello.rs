//! A bare hyper hello-world, the baseline that `cargo xtask bench` compares eco-service against.
//!
//! Same hyper HTTP/1 server and the same single-threaded tokio runtime as eco-service, but no
//! routing, timeouts, graceful shutdown or signal handling. Listens on 127.0.0.1:$PORT (default
//! 5001; 0 picks a free port) and prints the address on stderr.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming};
use hyper_util::rt::TokioIo;

fn main() -> std::io::Result<()> {
    let port = match std::env::var("PORT") {
        Ok(value) => value
            .parse()
            .map_err(|_| std::io::Error::other(format!("invalid PORT {value:?}")))?,
        Err(_) => 5001,
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let listener =
                tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
                    .await?;
            eprintln!("bare_hello listening on http://{}", listener.local_addr()?);
            loop {
                let (stream, _) = listener.accept().await?;
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_: Request<Incoming>| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                            "Eco Docker Demo Running 🌱".as_bytes(),
                        ))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        })
}
