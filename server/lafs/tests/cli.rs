//! Tests of the built `lafs` binary: `create` and `run` (on 127.0.0.1 ephemeral ports).
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a test failure.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{lines, read_key_values, ChildGuard};

const LAFS: &str = env!("CARGO_BIN_EXE_lafs");
/// Bound on every wait for the child.
const WAIT: Duration = Duration::from_secs(30);

fn lafs(args: &[&str]) -> Output {
    Command::new(LAFS).args(args).output().unwrap()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn create_writes_config_and_private_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let d = dir.to_str().unwrap();
    let out = lafs(&[
        "create",
        "client,storage",
        d,
        "--introducer",
        "ws://127.0.0.1:1/v1/introducer",
        "--storage-port",
        "0",
        "--nickname",
        "alpha",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("private")), 0o700);
    for k in ["node.key", "account.key"] {
        let p = dir.join("private").join(k);
        assert_eq!(mode(&p), 0o600, "{k}");
        let text = fs::read_to_string(&p).unwrap();
        assert_eq!(text.len(), 65, "{k}: 64 hex digits and a newline");
        assert!(text.trim_end().bytes().all(|b| b.is_ascii_hexdigit()));
    }
    let a = fs::read_to_string(dir.join("private/node.key")).unwrap();
    let b = fs::read_to_string(dir.join("private/account.key")).unwrap();
    assert_ne!(a, b, "keys are independent");
    let config = fs::read_to_string(dir.join("lafs.toml")).unwrap();
    assert!(
        config.contains("roles = [\"client\", \"storage\"]"),
        "{config}"
    );
    assert!(
        config.contains("introducer = \"ws://127.0.0.1:1/v1/introducer\""),
        "{config}"
    );
    assert!(config.contains("nickname = \"alpha\""), "{config}");
    assert!(
        config.contains("[storage]\nlisten = \"127.0.0.1:0\""),
        "{config}"
    );
    assert!(!config.contains("[introducer]"), "{config}");

    // Refuses to overwrite: the keys stay as they were.
    let again = lafs(&[
        "create",
        "client",
        d,
        "--introducer",
        "ws://127.0.0.1:1/v1/introducer",
    ]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("refusing to overwrite"),
        "{}",
        stderr(&again)
    );
    assert_eq!(fs::read_to_string(dir.join("private/node.key")).unwrap(), a);

    // A non-empty directory that is not a node is refused too.
    let other = tmp.path().join("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("file"), "x").unwrap();
    let o = lafs(&["create", "introducer", other.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not empty"), "{}", stderr(&o));
}

#[test]
fn create_rejects_bad_arguments_and_defaults_to_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n).to_str().unwrap().to_owned();
    let cases: &[(&[&str], &str)] = &[
        (&["create", "client,helper", &p("a")], "unknown role"),
        (&["create", "storage", &p("b")], "introducer URL"),
        (
            &["create", "client", &p("c"), "--introducer", "http://x/"],
            "ws://",
        ),
        (&["create", "storage,storage", &p("d")], "twice"),
        (
            &[
                "create",
                "storage",
                &p("e"),
                "--port",
                "5",
                "--introducer",
                "ws://h:1/v1/introducer",
            ],
            "--port",
        ),
        (
            &["create", "introducer,storage", &p("f"), "--host", "0.0.0.0"],
            "--storage-url",
        ),
    ];
    for (args, want) in cases {
        let o = lafs(args);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
        assert!(
            !Path::new(args[2]).exists(),
            "{args:?} left a directory behind"
        );
    }
    // Default: loopback, with a concrete port chosen at creation.
    let o = lafs(&["create", "introducer", &p("g")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let config = fs::read_to_string(tmp.path().join("g/lafs.toml")).unwrap();
    assert!(config.contains("listen = \"127.0.0.1:"), "{config}");
    assert!(!config.contains("127.0.0.1:0\""), "{config}");
    assert!(!config.contains("0.0.0.0"), "{config}");
}

fn spawn_run(dir: &Path) -> ChildGuard {
    let child = Command::new(LAFS)
        .args(["run", dir.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    ChildGuard(Some(child))
}

/// Reads `key = "value"` lines from the child's stdout until `keys` are all seen.
fn read_urls(child: &mut ChildGuard, keys: &[&str]) -> Vec<(String, String)> {
    let rx = lines(child.child().stdout.take().unwrap());
    read_key_values(&rx, keys.len(), Instant::now() + WAIT)
        .unwrap_or_else(|| panic!("no URLs printed in time; stderr:\n{}", child.stderr()))
}

/// A plain HTTP/1.1 GET; returns (status, body).
fn http_get(base: &str, path: &str) -> (u16, String) {
    let authority = base
        .trim_start_matches("http://")
        .trim_start_matches("ws://");
    let authority = authority.split('/').next().unwrap();
    let mut s = TcpStream::connect(authority).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.split(' ').nth(1).unwrap().parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Body of a possibly chunked response, good enough for small JSON bodies.
fn json_body(body: &str) -> serde_json::Value {
    let start = body.find('{').unwrap();
    let end = body.rfind('}').unwrap();
    serde_json::from_str(&body[start..=end]).unwrap()
}

fn create_node(dir: &Path, roles: &str, extra: &[&str]) {
    let mut args = vec!["create", roles, dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = lafs(&args);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn signal(pid: u32, sig: &str) {
    let st = Command::new("/bin/kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn run_serves_all_roles_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("grid");
    create_node(
        &dir,
        "introducer,storage",
        &["--port", "0", "--storage-port", "0", "--nickname", "s1"],
    );
    let mut node = spawn_run(&dir);
    let urls = read_urls(&mut node, &["introducer", "storage"]);
    assert_eq!(urls[0].0, "introducer");
    assert_eq!(urls[1].0, "storage");
    let (intro, storage) = (urls[0].1.clone(), urls[1].1.clone());
    assert!(
        intro.starts_with("ws://127.0.0.1:") && intro.ends_with("/v1/introducer"),
        "{intro}"
    );
    assert!(storage.starts_with("http://127.0.0.1:"), "{storage}");
    let url_file = fs::read_to_string(dir.join("node.url")).unwrap();
    assert_eq!(
        url_file,
        format!("introducer = \"{intro}\"\nstorage = \"{storage}\"\n")
    );

    let (status, body) = http_get(&intro, "/");
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_body(&body)["service"], "lafs-introducer");
    let (status, body) = http_get(&storage, "/storage/v1/version");
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_body(&body)["protocol"], "lafs-storage/1");

    // The storage role announces itself to the node's own introducer.
    let deadline = Instant::now() + WAIT;
    let servers = loop {
        let (_, body) = http_get(&intro, "/v1/servers");
        let v = json_body(&body);
        if v["servers"].as_array().is_some_and(|s| !s.is_empty()) {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "storage never announced; stderr:\n{}",
            node.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let ann = &servers["servers"][0]["announcement"];
    assert_eq!(ann["url"], storage.as_str());
    assert_eq!(ann["nickname"], "s1");
    assert_eq!(ann["protocol"], 1);

    // A client node subscribes to it.
    let cdir = tmp.path().join("client");
    create_node(&cdir, "client", &["--introducer", &intro]);
    let mut client = spawn_run(&cdir);
    let client_err = lines(client.child().stderr.take().unwrap());
    let mut seen = String::new();
    let deadline = Instant::now() + WAIT;
    while !seen.contains("storage server available") {
        let left = deadline.saturating_duration_since(Instant::now());
        match client_err.recv_timeout(left) {
            Ok(line) => seen.push_str(&line),
            Err(_) => panic!("client never saw the server:\n{seen}"),
        }
    }
    signal(client.pid(), "-INT");
    let st = client
        .wait_timeout(WAIT)
        .expect("client did not exit after SIGINT");
    assert!(st.success(), "client exit: {st:?}");

    let t = Instant::now();
    signal(node.pid(), "-TERM");
    let st = node
        .wait_timeout(WAIT)
        .expect("node did not exit after SIGTERM");
    assert!(st.success(), "exit {st:?}; stderr:\n{}", node.stderr());
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        t.elapsed()
    );
    assert!(
        !dir.join("node.url").exists(),
        "node.url is removed on clean exit"
    );
    let err = node.stderr();
    assert!(
        err.contains("SIGTERM: shutting down") && err.contains("stopped"),
        "{err}"
    );
}

#[test]
fn run_refuses_a_missing_or_broken_node() {
    let tmp = tempfile::tempdir().unwrap();
    let o = lafs(&["run", tmp.path().join("nothing").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("lafs.toml"), "{}", stderr(&o));
    let dir = tmp.path().join("n");
    create_node(&dir, "introducer", &["--port", "0"]);
    fs::write(dir.join("private/node.key"), "not a key\n").unwrap();
    let o = lafs(&["run", dir.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("node.key"), "{}", stderr(&o));
}

#[test]
fn help_lists_only_working_subcommands() {
    let o = lafs(&["--help"]);
    assert!(o.status.success());
    let help = String::from_utf8(o.stdout).unwrap();
    let commands: Vec<&str> = help
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("Options:")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        commands,
        vec![
            "create", "run", "put", "get", "check", "demo", "mkdir", "ls", "cp", "mv", "rm", "ln",
            "alias", "help"
        ]
    );
}
