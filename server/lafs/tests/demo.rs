//! `lafs demo` as a user runs it: a child process, its printed web UI URL, `lafs put/get --node
//! DIR/client` and `--gateway URL` against it, a download through the gateway, then Ctrl-C
//! (SIGINT) and a clean exit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;
use common::{lines, wait_for_line, ChildGuard};

const LAFS: &str = env!("CARGO_BIN_EXE_lafs");

/// A plain HTTP/1.1 GET (no client library needed); returns status and body.
fn http_get(addr: &str, path: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(
        head.to_ascii_lowercase().contains("content-length:"),
        "a file response has a length: {head}"
    );
    (status, resp[split + 4..].to_vec())
}

fn lafs(args: &[&str]) -> std::process::Output {
    Command::new(LAFS)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn demo_grid_put_get_gateway_and_ctrl_c() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let mut child = Command::new(LAFS)
        .args(["demo", "--port", "0", "--storage-nodes", "10", "--dir"])
        .arg(&dir)
        .args(["--web"])
        .arg(tmp.path().join("no-web-app"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let rx = lines(child.stdout.take().unwrap());
    let pid = child.id();
    let mut guard = ChildGuard(Some(child));
    let line = wait_for_line(&rx, "web UI:", Duration::from_secs(60));
    let url = line.split_whitespace().last().unwrap().to_owned();
    let addr = url
        .strip_prefix("http://")
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    let client = dir.join("client");
    assert!(client.join("lafs.toml").is_file());

    // lafs put / lafs get through the client node.
    let file = tmp.path().join("in.bin");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    let node = client.to_str().unwrap();
    let put = lafs(&["put", "--node", node, file.to_str().unwrap()]);
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let cap = String::from_utf8(put.stdout).unwrap().trim().to_owned();
    assert!(cap.starts_with("lafsr1"), "{cap}");
    let out = tmp.path().join("out.bin");
    let get = lafs(&["get", "--node", node, &cap, "-o", out.to_str().unwrap()]);
    assert!(
        get.status.success(),
        "{}",
        String::from_utf8_lossy(&get.stderr)
    );
    assert!(std::fs::read(&out).unwrap() == data);

    // The same file through the gateway.
    let (status, body) = http_get(&addr, &format!("/uri/{cap}"));
    assert_eq!(status, 200);
    assert!(body == data);
    let (status, body) = http_get(&addr, "/");
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("not built"));

    // lafs put/get --gateway: the same commands through the web API.
    let put = lafs(&["put", "--gateway", &url, file.to_str().unwrap()]);
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let cap2 = String::from_utf8(put.stdout).unwrap().trim().to_owned();
    assert!(cap2.starts_with("lafsr1"), "{cap2}");
    let out2 = tmp.path().join("out2.bin");
    let get = lafs(&[
        "get",
        "--gateway",
        &url,
        &cap2,
        "-o",
        out2.to_str().unwrap(),
    ]);
    assert!(
        get.status.success(),
        "{}",
        String::from_utf8_lossy(&get.stderr)
    );
    assert!(std::fs::read(&out2).unwrap() == data);
    // A file uploaded through the gateway is on the grid: the node reads it too.
    let get = lafs(&["get", "--node", node, &cap2, "-o", out2.to_str().unwrap()]);
    assert!(
        get.status.success(),
        "{}",
        String::from_utf8_lossy(&get.stderr)
    );
    assert!(std::fs::read(&out2).unwrap() == data);
    let bad = lafs(&["get", "--gateway", &url, "lafsr1nonsense"]);
    assert!(!bad.status.success());

    // Ctrl-C: a clean stop.
    let kill = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    wait_for_line(&rx, "lafs demo stopped", Duration::from_secs(20));
    let status = guard
        .wait_timeout(Duration::from_secs(20))
        .expect("lafs demo did not exit after SIGINT");
    assert!(status.success(), "{status}");
}
