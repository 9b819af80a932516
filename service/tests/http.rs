//! Drives `eco_service::run` in-process over real loopback sockets with raw HTTP/1 bytes.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use eco_service::{Config, Stopped};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// How long any single step may take before the test fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(10);

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Stopped>,
}

impl Server {
    async fn start(config: Config) -> Self {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move { eco_service::run(listener, stopped, &config).await });
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    fn shutdown(&mut self) {
        self.stop.take().unwrap().send(()).unwrap();
    }

    async fn stopped(self) -> Stopped {
        timeout(PATIENCE, self.task)
            .await
            .expect("run did not return")
            .unwrap()
    }
}

fn long_timeouts() -> Config {
    Config {
        header_read_timeout: Duration::from_secs(60),
        drain_timeout: Duration::from_secs(60),
        ..Config::default()
    }
}

/// Sends `request` on a new connection and returns everything the server sends until it closes.
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    read_to_close(&mut stream).await
}

async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    timeout(PATIENCE, stream.read_to_end(&mut bytes))
        .await
        .expect("the server did not close the connection")
        .unwrap();
    without_date(&String::from_utf8(bytes).unwrap())
}

/// Reads exactly one response that carries a content-length, leaving the connection open.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    let mut byte = [0];
    while !bytes.ends_with(b"\r\n\r\n") {
        let n = timeout(PATIENCE, stream.read(&mut byte))
            .await
            .expect("no response head")
            .unwrap();
        assert_eq!(n, 1, "closed mid-head after {bytes:?}");
        bytes.push(byte[0]);
    }
    let head = String::from_utf8(bytes.clone()).unwrap();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .expect("no content-length")
        .parse()
        .unwrap();
    let mut body = vec![0; length];
    timeout(PATIENCE, stream.read_exact(&mut body))
        .await
        .expect("no response body")
        .unwrap();
    bytes.extend(body);
    without_date(&String::from_utf8(bytes).unwrap())
}

/// Replaces the value of the `date` header, the one part of a response that changes.
fn without_date(response: &str) -> String {
    let mut out = String::new();
    let mut rest = response;
    while let Some(start) = rest.find("\r\ndate: ") {
        let end = start + 2 + rest[start + 2..].find("\r\n").unwrap();
        out.push_str(&rest[..start]);
        out.push_str("\r\ndate: DATE");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Waits until the server has read everything sent on `client`, as the kernel reports it.
///
/// Hyper's graceful shutdown closes a connection on which it has not read a byte yet, but lets a
/// request whose first bytes it has read finish; this tells the two cases apart.
async fn wait_until_server_has_read(client: &TcpStream) {
    // /proc/net/tcp lists the server's end as local address, peer address, then
    // "tx_queue:rx_queue", all in hex; rx_queue is what the server has not read yet.
    let hex = |addr: SocketAddr| match addr {
        SocketAddr::V4(v4) => format!("{:08X}:{:04X}", u32::from(*v4.ip()).swap_bytes(), v4.port()),
        SocketAddr::V6(_) => unreachable!("the tests use 127.0.0.1"),
    };
    let server_end = format!(
        "{} {}",
        hex(client.peer_addr().unwrap()),
        hex(client.local_addr().unwrap())
    );
    timeout(PATIENCE, async {
        loop {
            let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
            let unread = table.lines().find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                (fields.get(1..3)?.join(" ") == server_end).then(|| fields[4].to_owned())
            });
            if unread
                .as_deref()
                .is_some_and(|queues| queues.ends_with(":00000000"))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the server did not read the request bytes");
}

async fn assert_closed_by_server(stream: &mut TcpStream) {
    let mut rest = Vec::new();
    let read = timeout(PATIENCE, stream.read_to_end(&mut rest))
        .await
        .expect("the server kept the connection open");
    // A reset also counts as closed; what matters is that no response arrived.
    if read.is_ok() {
        assert_eq!(rest, b"", "unexpected bytes before close");
    }
}

const OK_ROOT: &str = "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\n\
    content-length: 28\r\ndate: DATE\r\n\r\n";

#[tokio::test]
async fn get_root_answers_the_exact_body() {
    let server = Server::start(Config::default()).await;
    let response = exchange(
        server.addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        response,
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n\
         content-length: 28\r\ndate: DATE\r\n\r\nEco Docker Demo Running \u{1F331}"
    );
}

#[tokio::test]
async fn head_root_has_the_headers_of_get_and_no_body() {
    let server = Server::start(Config::default()).await;
    // A second request on the same connection proves that no body bytes followed the HEAD head.
    let response = exchange(
        server.addr,
        b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        response,
        format!(
            "{OK_ROOT}HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\n\
             connection: close\r\ncontent-length: 2\r\ndate: DATE\r\n\r\nok"
        )
    );
}

#[tokio::test]
async fn unknown_paths_are_404_and_other_methods_405() {
    let server = Server::start(Config::default()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    for path in ["/nope", "/healthz/", "//", "/index.html"] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        assert_eq!(
            read_response(&mut stream).await,
            "HTTP/1.1 404 Not Found\r\ncontent-type: text/plain; charset=utf-8\r\n\
             content-length: 9\r\ndate: DATE\r\n\r\nnot found",
            "{path}"
        );
    }
    for request in [
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        "DELETE /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        "OPTIONS / HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        stream.write_all(request.as_bytes()).await.unwrap();
        assert_eq!(
            read_response(&mut stream).await,
            "HTTP/1.1 405 Method Not Allowed\r\ncontent-type: text/plain; charset=utf-8\r\n\
             allow: GET, HEAD\r\ncontent-length: 18\r\ndate: DATE\r\n\r\nmethod not allowed",
            "{request}"
        );
    }
    // A query string does not change the path.
    stream
        .write_all(b"GET /?source=test HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        read_response(&mut stream).await,
        format!("{OK_ROOT}{}", eco_service::BODY)
    );
}

#[tokio::test]
async fn malformed_request_gets_400_and_others_are_still_served() {
    let server = Server::start(Config::default()).await;
    let response = exchange(server.addr, b"this is not http\r\n\r\n").await;
    assert_eq!(
        response,
        "HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: DATE\r\n\r\n"
    );
    let response = exchange(
        server.addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\nok"), "{response}");
}

#[tokio::test]
async fn a_client_that_stalls_mid_head_is_cut_off() {
    let server = Server::start(Config {
        header_read_timeout: Duration::from_millis(200),
        ..Config::default()
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert_closed_by_server(&mut stream).await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let server = Server::start(Config {
        header_read_timeout: Duration::from_millis(200),
        ..Config::default()
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    read_response(&mut stream).await;
    assert_closed_by_server(&mut stream).await;
}

#[tokio::test]
async fn shutdown_closes_idle_keep_alive_connections_at_once() {
    let mut server = Server::start(long_timeouts()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    read_response(&mut stream).await;
    server.shutdown();
    // With 60 s timeouts, only the graceful shutdown can close it within PATIENCE.
    assert_closed_by_server(&mut stream).await;
    assert_eq!(server.stopped().await, Stopped::Drained);
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish() {
    let mut server = Server::start(long_timeouts()).await;

    // The request on `slow` is in flight: its head has started but is not complete.
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    wait_until_server_has_read(&slow).await;

    server.shutdown();
    // Wait until the server has seen the shutdown: it closes its listener.
    timeout(PATIENCE, async {
        loop {
            match TcpStream::connect(server.addr).await {
                // A reset means the listener closed while this probe was queued on it.
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
                    ) =>
                {
                    break;
                }
                Err(err) => panic!("unexpected connect error: {err}"),
                // Closed at once, so the server sees EOF and does not wait for it.
                Ok(probe) => drop(probe),
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the listener stayed open after shutdown");
    assert!(
        !server.task.is_finished(),
        "run returned with a request in flight"
    );

    slow.write_all(b"\r\n").await.unwrap();
    assert_eq!(
        read_to_close(&mut slow).await,
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n\
         content-length: 28\r\ndate: DATE\r\n\r\nEco Docker Demo Running \u{1F331}"
    );
    assert_eq!(server.stopped().await, Stopped::Drained);
}

#[tokio::test]
async fn drain_is_bounded() {
    let mut server = Server::start(Config {
        header_read_timeout: Duration::from_secs(60),
        drain_timeout: Duration::from_millis(100),
        ..Config::default()
    })
    .await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    wait_until_server_has_read(&slow).await;
    server.shutdown();
    assert_eq!(server.stopped().await, Stopped::DrainTimedOut);
}
