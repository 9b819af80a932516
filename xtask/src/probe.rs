//! Talks HTTP to a running variant: readiness, the answer checks, and a bounded load.
//!
//! Uses hyper's client directly so the bytes checked are the bytes on the wire, and the load generator
//! needs no external tool. The load runs on one thread so it takes the same share of the CPU for every variant.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::model::Check;

/// The exact answer the blog post's app gave, which every variant must give too.
pub const EXPECTED_BODY: &[u8] = "Eco Docker Demo Running 🌱".as_bytes();
pub const EXPECTED_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub content_length: Option<String>,
    pub body: Vec<u8>,
}

type Body = Empty<&'static [u8]>;

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Body>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn send(sender: &mut SendRequest<Body>, method: &str, path: &str) -> Result<Answer> {
    sender.ready().await?;
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .body(Body::new())?;
    let res = sender.send_request(req).await?;
    let header = |name| {
        res.headers()
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let (status, content_type, content_length) = (
        res.status().as_u16(),
        header(hyper::header::CONTENT_TYPE),
        header(hyper::header::CONTENT_LENGTH),
    );
    let body = res.into_body().collect().await?.to_bytes().to_vec();
    Ok(Answer {
        status,
        content_type,
        content_length,
        body,
    })
}

/// One request on a fresh connection.
pub fn request(addr: SocketAddr, method: &str, path: &str) -> Result<Answer> {
    runtime()?.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), async {
            let mut sender = connect(addr).await?;
            send(&mut sender, method, path).await
        })
        .await
        .with_context(|| format!("{method} {path} timed out"))?
    })
}

/// Polls `GET /` until it answers 200; returns when it did. Errors after `timeout`.
pub fn wait_ready(addr: SocketAddr, timeout: Duration) -> Result<Instant> {
    let deadline = Instant::now() + timeout;
    let rt = runtime()?;
    let mut last_error = String::from("no attempt");
    while Instant::now() < deadline {
        let attempt = rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(500), async {
                let mut sender = connect(addr).await?;
                send(&mut sender, "GET", "/").await
            })
            .await
        });
        match attempt {
            Ok(Ok(answer)) if answer.status == 200 => return Ok(Instant::now()),
            Ok(Ok(answer)) => last_error = format!("status {}", answer.status),
            Ok(Err(err)) => last_error = format!("{err:#}"),
            Err(_) => last_error = "attempt timed out".into(),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    bail!(
        "no 200 from GET / within {:.0} s (last: {last_error})",
        timeout.as_secs_f64()
    )
}

/// The checks every variant must pass: the post's answer, exactly, and the service's contract.
pub fn check_answers(get_root: &Answer, head_root: &Answer, healthz: &Answer) -> Vec<Check> {
    let check = |name: &str, passed: bool, detail: String| Check {
        name: name.to_string(),
        passed,
        detail: if passed { String::new() } else { detail },
    };
    vec![
        check(
            "GET / status 200",
            get_root.status == 200,
            format!("got {}", get_root.status),
        ),
        check(
            "GET / body is exactly the post's answer",
            get_root.body == EXPECTED_BODY,
            format!(
                "expected {:?}, got {:?}",
                String::from_utf8_lossy(EXPECTED_BODY),
                String::from_utf8_lossy(&get_root.body)
            ),
        ),
        check(
            "GET / content-type",
            get_root.content_type.as_deref() == Some(EXPECTED_CONTENT_TYPE),
            format!(
                "expected {EXPECTED_CONTENT_TYPE:?}, got {:?}",
                get_root.content_type
            ),
        ),
        check(
            "HEAD / same status and length, no body",
            head_root.status == 200
                && head_root.body.is_empty()
                && head_root.content_length.as_deref() == Some("28"),
            format!(
                "got status {}, content-length {:?}, {} body bytes",
                head_root.status,
                head_root.content_length,
                head_root.body.len()
            ),
        ),
        check(
            "GET /healthz is 200 ok",
            healthz.status == 200 && healthz.body == b"ok",
            format!(
                "got {} {:?}",
                healthz.status,
                String::from_utf8_lossy(&healthz.body)
            ),
        ),
    ]
}

/// Runs every check against a live address.
pub fn check(addr: SocketAddr) -> Result<Vec<Check>> {
    let get_root = request(addr, "GET", "/")?;
    let head_root = request(addr, "HEAD", "/")?;
    let healthz = request(addr, "GET", "/healthz")?;
    Ok(check_answers(&get_root, &head_root, &healthz))
}

#[derive(Debug, Clone)]
pub struct LoadResult {
    pub seconds: f64,
    pub errors: u64,
    /// Latency of each successful request, sorted ascending.
    pub latencies: Vec<Duration>,
}

/// Sends exactly `requests` `GET /` over `concurrency` keep-alive connections, then stops.
pub fn load(addr: SocketAddr, requests: u64, concurrency: u64) -> Result<LoadResult> {
    if requests == 0 || concurrency == 0 {
        bail!("the load needs at least one request and one connection");
    }
    let rt = runtime()?;
    rt.block_on(async {
        let remaining = Arc::new(AtomicU64::new(requests));
        let errors = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency.min(requests) {
            let (remaining, errors) = (remaining.clone(), errors.clone());
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut sender: Option<SendRequest<Body>> = None;
                while remaining
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    let t = Instant::now();
                    let result = tokio::time::timeout(Duration::from_secs(10), async {
                        if sender.as_ref().is_none_or(|s| s.is_closed()) {
                            sender = Some(connect(addr).await?);
                        }
                        let s = sender.as_mut().expect("connected above");
                        send(s, "GET", "/").await
                    })
                    .await;
                    match result {
                        Ok(Ok(answer)) if answer.status == 200 && answer.body == EXPECTED_BODY => {
                            latencies.push(t.elapsed())
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            sender = None;
                        }
                    }
                }
                latencies
            }));
        }
        let mut latencies = Vec::with_capacity(requests as usize);
        for task in tasks {
            latencies.extend(task.await?);
        }
        let seconds = start.elapsed().as_secs_f64();
        latencies.sort_unstable();
        Ok(LoadResult {
            seconds,
            errors: errors.load(Ordering::Relaxed),
            latencies,
        })
    })
}

/// The `p`-th percentile (0–100) of sorted samples, nearest-rank; `None` when there are none.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The median of a non-empty list of numbers.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, ct: Option<&str>, len: Option<&str>, body: &[u8]) -> Answer {
        Answer {
            status,
            content_type: ct.map(Into::into),
            content_length: len.map(Into::into),
            body: body.to_vec(),
        }
    }

    #[test]
    fn the_expected_body_is_the_posts_28_bytes() {
        assert_eq!(EXPECTED_BODY.len(), 28);
        assert_eq!(&EXPECTED_BODY[24..], [0xf0, 0x9f, 0x8c, 0xb1]);
    }

    #[test]
    fn a_correct_service_passes_every_check() {
        let get = answer(200, Some(EXPECTED_CONTENT_TYPE), Some("28"), EXPECTED_BODY);
        let head = answer(200, Some(EXPECTED_CONTENT_TYPE), Some("28"), b"");
        let health = answer(200, Some("text/plain"), Some("2"), b"ok");
        let checks = check_answers(&get, &head, &health);
        assert_eq!(checks.len(), 5);
        assert!(
            checks.iter().all(|c| c.passed && c.detail.is_empty()),
            "{checks:?}"
        );
    }

    #[test]
    fn a_trailing_newline_or_wrong_type_fails_with_detail() {
        let mut body = EXPECTED_BODY.to_vec();
        body.push(b'\n');
        let get = answer(200, Some("text/html; charset=utf-8"), Some("29"), &body);
        let head = answer(200, None, Some("29"), b"");
        let health = answer(404, None, None, b"");
        let failed: Vec<(String, String)> = check_answers(&get, &head, &health)
            .into_iter()
            .filter(|c| !c.passed)
            .map(|c| (c.name, c.detail))
            .collect();
        assert_eq!(
            failed,
            [
                (
                    "GET / body is exactly the post's answer".to_string(),
                    "expected \"Eco Docker Demo Running 🌱\", got \"Eco Docker Demo Running 🌱\\n\"".to_string()
                ),
                (
                    "GET / content-type".to_string(),
                    "expected \"text/plain; charset=utf-8\", got Some(\"text/html; charset=utf-8\")".to_string()
                ),
                (
                    "HEAD / same status and length, no body".to_string(),
                    "got status 200, content-length Some(\"29\"), 0 body bytes".to_string()
                ),
                ("GET /healthz is 200 ok".to_string(), "got 404 \"\"".to_string()),
            ]
        );
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let ms: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&ms, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&ms, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&ms, 100.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&ms[..1], 99.0), Some(Duration::from_millis(1)));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn load_against_a_closed_port_counts_errors_and_stops() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let result = load(addr, 20, 4).unwrap();
        assert_eq!(result.errors, 20);
        assert!(result.latencies.is_empty());
    }
}
