//! Spawns the real `eco-service` binary: exit codes, stderr lines, signals and `--health-check`.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Child, ChildStderr, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long any single step may take before the test fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(10);

fn eco_service() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_eco-service"));
    command.env_remove("PORT");
    command
}

/// A server started with `--port 0`; the port comes from its start line.
struct Running {
    child: Child,
    port: u16,
    stderr_lines: mpsc::Receiver<String>,
}

impl Running {
    fn start() -> Self {
        let mut child = eco_service()
            .args(["--port", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr_lines = forward_lines(child.stderr.take().unwrap());
        let start_line = stderr_lines.recv_timeout(PATIENCE).expect("no start line");
        let port = start_line
            .strip_prefix(concat!(
                "eco-service ",
                env!("CARGO_PKG_VERSION"),
                " listening on http://0.0.0.0:"
            ))
            .unwrap_or_else(|| panic!("unexpected start line {start_line:?}"))
            .parse()
            .unwrap();
        Self {
            child,
            port,
            stderr_lines,
        }
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill has no memory-safety preconditions; the pid is our own child's.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Waits for the exit, killing the child and failing if it takes longer than PATIENCE.
    fn wait(mut self) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                self.child.kill().unwrap();
                panic!("eco-service did not exit within {PATIENCE:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        (status, self.stderr_lines.iter().collect())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Only matters when a test failed half-way: no server may outlive the tests.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn forward_lines(stderr: ChildStderr) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    rx
}

fn run(command: &mut Command) -> Output {
    // Every command here answers at once or within its own 2 s health-check timeout.
    command.output().unwrap()
}

fn stderr_lines(output: &Output) -> Vec<String> {
    String::from_utf8(output.stderr.clone())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn sigterm_stops_the_server_with_exit_code_0() {
    for (signal, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
        let server = Running::start();
        server.signal(signal);
        let (status, lines) = server.wait();
        assert_eq!(status.code(), Some(0), "{name}: {lines:?}");
        assert_eq!(lines, [format!("eco-service stopped on {name}")]);
    }
}

#[test]
fn running_out_of_file_descriptors_does_not_stop_the_accept_loop() {
    let server = Running::start();
    let pid = libc::pid_t::try_from(server.child.id()).unwrap();
    let mut original = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a null new limit only reads the child's limit into `original`.
    let read = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut original) };
    assert_eq!(read, 0);
    // The kernel hands out the lowest free descriptor, so with the soft limit at the lowest free
    // one the next accept fails with EMFILE.
    let open: Vec<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|entry| {
            entry
                .unwrap()
                .file_name()
                .to_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    let lowest_free = (0..).find(|fd| !open.contains(fd)).unwrap();
    let set_limit = |soft| {
        let limit = libc::rlimit {
            rlim_cur: soft,
            rlim_max: original.rlim_max,
        };
        // SAFETY: both pointers are valid for the call; the pid is our own child's.
        let set = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &limit, std::ptr::null_mut()) };
        assert_eq!(set, 0);
    };
    set_limit(lowest_free);

    let mut client = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, server.port)).unwrap();
    let line = server
        .stderr_lines
        .recv_timeout(PATIENCE)
        .expect("no log line");
    assert!(
        line.starts_with("eco-service: accept failed, backing off: Too many open files"),
        "{line:?}"
    );
    set_limit(original.rlim_cur);

    // The queued connection is accepted after the back-off and served.
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    std::io::Write::write_all(
        &mut client,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut response = String::new();
    std::io::Read::read_to_string(&mut client, &mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response:?}");

    server.signal(libc::SIGTERM);
    let (status, lines) = server.wait();
    assert_eq!(status.code(), Some(0));
    // The burst of failed accepts was logged once, on the line read above.
    assert_eq!(lines, ["eco-service stopped on SIGTERM"]);
}

#[test]
fn health_check_exits_0_against_a_live_server() {
    let server = Running::start();
    let output = run(eco_service().args(["--health-check", "--port", &server.port.to_string()]));
    assert_eq!(output.status.code(), Some(0), "{:?}", stderr_lines(&output));
    assert!(output.stderr.is_empty());
    // PORT is the other way to name the port.
    let output = run(eco_service()
        .arg("--health-check")
        .env("PORT", server.port.to_string()));
    assert_eq!(output.status.code(), Some(0), "{:?}", stderr_lines(&output));
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait().0.code(), Some(0));
}

#[test]
fn health_check_exits_1_against_a_dead_port() {
    // A socket that is bound but not listening keeps the port to itself, so no other test can
    // start listening there, and a connection to it is refused.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    let output = run(eco_service().args(["--health-check", "--port", &port.to_string()]));
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr_lines(&output),
        [format!(
            "eco-service: unhealthy: cannot connect to 127.0.0.1:{port}: \
             Connection refused (os error 111)"
        )]
    );
}

#[test]
fn health_check_exits_1_when_the_answer_is_not_ok() {
    // Something listens but is not a healthy eco-service.
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    let port = listener.local_addr().unwrap().port();
    let fake = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        // The whole request is read first, so closing sends a FIN rather than a reset.
        let mut request = Vec::new();
        let mut byte = [0];
        while !request.ends_with(b"\r\n\r\n") {
            std::io::Read::read_exact(&mut stream, &mut byte).unwrap();
            request.push(byte[0]);
        }
        std::io::Write::write_all(
            &mut stream,
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
        )
        .unwrap();
        String::from_utf8(request).unwrap()
    });
    let output = run(eco_service().args(["--health-check", "--port", &port.to_string()]));
    assert_eq!(
        fake.join().unwrap(),
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr_lines(&output),
        ["eco-service: unhealthy: GET /healthz answered \"HTTP/1.1 503 Service Unavailable\""]
    );
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    let cases: &[(&[&str], Option<&str>)] = &[
        (&["--port", "abc"], None),
        (&["--port", ""], None),
        (&["--port", "65536"], None),
        (&["--port=-1"], None),
        (&["--port"], None),
        (&["--bogus"], None),
        (&["--health-check", "--port", "0"], None),
        (&[], Some("")),
        (&[], Some("http")),
        (&["--health-check"], Some("99999")),
    ];
    for &(args, port) in cases {
        let mut command = eco_service();
        command.args(args);
        if let Some(port) = port {
            command.env("PORT", port);
        }
        let output = run(&mut command);
        let lines = stderr_lines(&output);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?} PORT={port:?}: {lines:?}"
        );
        assert_eq!(lines.len(), 1, "{args:?} PORT={port:?}: {lines:?}");
        assert!(lines[0].starts_with("eco-service: "), "{lines:?}");
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn help_and_version_exit_0() {
    let output = run(eco_service().arg("--version"));
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        concat!("eco-service ", env!("CARGO_PKG_VERSION"), "\n")
    );
    let output = run(eco_service().arg("--help"));
    assert_eq!(output.status.code(), Some(0));
    assert!(
        String::from_utf8(output.stdout)
            .unwrap()
            .starts_with("Usage: eco-service")
    );
}
