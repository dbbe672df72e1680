//! `threadline proxy` as a process: reads its TOML file and arguments, forwards with
//! the policy, writes JSON access lines with the context on stdout, and on SIGTERM
//! stops gracefully (exit status 0).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A tiny app: answers every request with the `x-tenant-id` it received.
fn app() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).unwrap_or(0) == 1 {
                head.push(b[0]);
            }
            let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
            let tenant = head
                .lines()
                .find_map(|l| l.strip_prefix("x-tenant-id: "))
                .unwrap_or("-")
                .to_owned();
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{tenant}",
                tenant.len()
            );
        }
    });
    addr
}

#[test]
fn proxy_binary_forwards_logs_and_stops_on_sigterm() {
    let app = app();
    let dir = std::env::temp_dir().join(threadline_testkit::unique("threadline-proxy-cli", '-'));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("proxy.toml");
    std::fs::write(
        &config,
        "[[policy.headers]]\nname = \"x-tenant-id\"\ntrusted_only = true\n\n[trust]\npeers = [\"127.0.0.1/32\"]\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_threadline"))
        .args(["proxy", "--listen", "127.0.0.1:0", "--workers", "1"])
        .arg("--upstream")
        .arg(format!("http://{app}"))
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("threadline proxy: listening on ")
        .unwrap_or_else(|| panic!("first line: {line:?}"))
        .parse()
        .unwrap();

    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    tcp.write_all(b"GET /x HTTP/1.1\r\nhost: a\r\nx-correlation-id: cli-1\r\nx-tenant-id: acme\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("x-correlation-id: cli-1\r\n"), "{answer}");
    assert!(
        answer.ends_with("acme"),
        "trusted peer: the tenant goes through: {answer}"
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut waited = 0;
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(waited < 400, "the proxy did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
        waited += 1;
    };
    assert!(exit.success(), "{exit:?}");
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let access: serde_json::Value = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["target"] == "threadline_proxy::access")
        .unwrap_or_else(|| panic!("no access line in {out}"));
    assert_eq!(access["correlation_id"], "cli-1");
    assert_eq!(access["tenant_id"], "acme");
    assert_eq!(access["fields"]["status"], 200);
    let _ = std::fs::remove_dir_all(&dir);
}
