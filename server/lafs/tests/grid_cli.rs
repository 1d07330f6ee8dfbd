//! `lafs put`, `get` and `check` against a real local grid of `lafs run` processes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a test failure.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{lines, read_key_values, ChildGuard as Node};

const LAFS: &str = env!("CARGO_BIN_EXE_lafs");
const WAIT: Duration = Duration::from_secs(30);

fn lafs(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(LAFS)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(data) = stdin {
        input.write_all(data).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "status {:?}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// Creates and runs a node; returns it with the `key = "url"` lines it printed.
fn start(dir: &Path, roles: &str, extra: &[&str]) -> (Node, Vec<(String, String)>) {
    let mut args = vec!["create", roles, dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    ok(&lafs(&args, None));
    let mut child = Command::new(LAFS)
        .args(["run", dir.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let want = roles.split(',').filter(|r| *r != "client").count();
    let rx = lines(child.stdout.take().unwrap());
    let urls =
        read_key_values(&rx, want, Instant::now() + WAIT).expect("node printed no URLs in time");
    (Node(Some(child)), urls)
}

/// A grid of four storage nodes in a temporary directory: node `a` (introducer, storage and
/// client) and three storage nodes announced through it. Dropping the nodes stops them.
fn four_node_grid() -> (tempfile::TempDir, Vec<Node>) {
    let tmp = tempfile::tempdir().unwrap();
    let (a, urls) = start(
        &tmp.path().join("a"),
        "introducer,storage,client",
        &["--storage-port", "0"],
    );
    let intro = &urls.iter().find(|(k, _)| k == "introducer").unwrap().1;
    let mut nodes = vec![a];
    for i in 0..3 {
        let d = tmp.path().join(format!("s{i}"));
        nodes.push(
            start(
                &d,
                "storage",
                &["--introducer", intro, "--storage-port", "0"],
            )
            .0,
        );
    }
    (tmp, nodes)
}

/// Every file below `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn put_get_check_on_a_local_grid() {
    let (tmp, mut nodes) = four_node_grid();
    let a = tmp.path().join("a");
    let node = a.to_str().unwrap();
    let grid = ["--node", node, "-k", "2", "-n", "4", "--happy", "4"];

    // A file: put prints the readcap; get returns the bytes, to a file and to stdout.
    let file = tmp.path().join("in.bin");
    let content = data(300_000);
    std::fs::write(&file, &content).unwrap();
    let mut args = vec!["put", file.to_str().unwrap(), "--segment-size", "65536"];
    args.extend_from_slice(&grid);
    let cap = ok(&lafs(&args, None)).trim().to_owned();
    assert!(cap.starts_with("lafsr1"), "{cap}");
    let out = tmp.path().join("out.bin");
    ok(&lafs(
        &["get", &cap, "--node", node, "-o", out.to_str().unwrap()],
        None,
    ));
    assert_eq!(std::fs::read(&out).unwrap(), content);
    let o = lafs(&["get", &cap, "--node", node], None);
    assert!(o.status.success());
    assert_eq!(o.stdout, content);

    // A file whose last segment is damaged in every share: get fails, and leaves no
    // truncated output file behind (nor does cp).
    let mut args = vec![
        "put",
        file.to_str().unwrap(),
        "--segment-size",
        "65536",
        "--json",
    ];
    args.extend_from_slice(&grid);
    let v: serde_json::Value = serde_json::from_str(&ok(&lafs(&args, None))).unwrap();
    let damaged = v["cap"].as_str().unwrap().to_owned();
    let o = lafs(
        &["check", &damaged, "--node", node, "--happy", "4", "--json"],
        None,
    );
    let si = serde_json::from_str::<serde_json::Value>(&ok(&o)).unwrap()["storage_index"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut flipped = 0;
    for share in walk(tmp.path())
        .into_iter()
        .filter(|p| p.parent().and_then(|d| d.file_name()) == Some(std::ffi::OsStr::new(&si)))
    {
        // Header (20 bytes), then 32 KiB blocks (k = 2): a byte of segment 4's block.
        let mut b = std::fs::read(&share).unwrap();
        b[20 + 4 * 32_768 + 10] ^= 0xff;
        std::fs::write(&share, b).unwrap();
        flipped += 1;
    }
    assert_eq!(flipped, 4);
    let broken = tmp.path().join("broken.bin");
    let o = lafs(
        &[
            "get",
            &damaged,
            "--node",
            node,
            "-o",
            broken.to_str().unwrap(),
        ],
        None,
    );
    assert!(!o.status.success());
    assert!(!broken.exists(), "a truncated file was left behind");

    // Standard input of unknown size, and JSON output.
    let piped = data(100_000);
    let mut args = vec!["put", "-", "--json"];
    args.extend_from_slice(&grid);
    let v: serde_json::Value = serde_json::from_str(&ok(&lafs(&args, Some(&piped)))).unwrap();
    assert_eq!(v["size"], 100_000);
    assert_eq!(v["happiness"], 4);
    let cap2 = v["cap"].as_str().unwrap().to_owned();
    assert_eq!(lafs(&["get", &cap2, "--node", node], None).stdout, piped);

    // A tiny file becomes a literal cap; reading it needs no grid.
    let mut args = vec!["put", "-"];
    args.extend_from_slice(&grid);
    let lit = ok(&lafs(&args, Some(b"hello\n"))).trim().to_owned();
    assert!(lit.starts_with("lafsl1"), "{lit}");
    assert_eq!(
        lafs(&["get", &lit, "--node", "/nonexistent"], None).stdout,
        b"hello\n"
    );

    // Check, plain and verifying.
    let o = lafs(
        &["check", &cap, "--node", node, "--happy", "4", "--json"],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!(v["healthy"], true, "{v}");
    assert_eq!(v["good_shares"], 4);
    assert_eq!(v["k"], 2);
    let o = lafs(
        &["check", &cap, "--node", node, "--happy", "4", "--verify"],
        None,
    );
    let text = ok(&o);
    assert!(text.starts_with("healthy"), "{text}");
    assert!(text.contains("every share read and verified"), "{text}");

    // One storage node dies: the file still reads, check says it is not healthy (exit 2).
    drop(nodes.pop());
    let o = lafs(&["get", &cap, "--node", node], None);
    assert_eq!(o.stdout, content, "{}", String::from_utf8_lossy(&o.stderr));
    let o = lafs(&["check", &cap, "--node", node, "--happy", "4"], None);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("NOT HEALTHY"));

    // A file that is on no server: not recoverable, and the report says that no share was found.
    let missing =
        "lafsr1qqqsyqcyq5rqwzqfpg9scrgwpugpzysnzs23v9ccrydpk8qarc0jqgfzyvjz2f389q5j52ev95hz7f6ss9h";
    let o = lafs(&["check", missing, "--node", node, "--happy", "4"], None);
    assert_eq!(o.status.code(), Some(2));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("NOT RECOVERABLE"), "{text}");
    assert!(text.contains("no share of this file was found"), "{text}");
    assert!(!text.contains("0-of-0"), "{text}");

    // Uploading now cannot be happy at 4; the error says why.
    let mut args = vec!["put", "-"];
    args.extend_from_slice(&grid);
    args.extend_from_slice(&["--wait", "1"]);
    let o = lafs(&args, Some(&data(5000)));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("4 are needed"), "{err}");

    // A bad cap is a clear error.
    let o = lafs(&["get", "lafsr1nonsense", "--node", node], None);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("parsing the cap"));
}

#[test]
fn directories_aliases_and_copies_on_a_local_grid() {
    let (tmp, _nodes) = four_node_grid();
    let a = tmp.path().join("a");
    let node = a.to_str().unwrap();
    let run = |args: &[&str]| {
        let mut v = args.to_vec();
        v.extend_from_slice(&["--node", node, "-k", "2", "-n", "4", "--happy", "4"]);
        ok(&lafs(&v, None))
    };

    let root = run(&["mkdir"]).trim().to_owned();
    assert!(root.starts_with("lafsdw1"), "{root}");
    ok(&lafs(
        &["alias", "add", "home", &root, "--node", node],
        None,
    ));
    assert!(ok(&lafs(&["alias", "list", "--node", node], None)).contains("home: lafsdw1"));

    // A local tree, copied recursively to the grid and back.
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("a.txt"), data(5000)).unwrap();
    std::fs::write(tree.join("sub/b.bin"), data(70_000)).unwrap();
    run(&["cp", "-r", tree.to_str().unwrap(), "home:"]);
    assert_eq!(run(&["ls", "home:"]), "tree/\n");
    assert_eq!(run(&["ls", "home:tree"]), "a.txt\nsub/\n");
    let back = tmp.path().join("back");
    run(&["cp", "-r", "home:tree", back.to_str().unwrap()]);
    assert_eq!(std::fs::read(back.join("sub/b.bin")).unwrap(), data(70_000));
    assert_eq!(std::fs::read(back.join("a.txt")).unwrap(), data(5000));
    // Long listing: kind, the size the copy recorded, name.
    assert_eq!(
        run(&["ls", "-l", "home:tree"]),
        "file            5000  a.txt\ndir                -  sub/\n"
    );
    // A file of several segments, streamed both ways; a literal-sized one too.
    let big = tmp.path().join("big.bin");
    std::fs::write(&big, data(2_500_000)).unwrap();
    run(&["cp", big.to_str().unwrap(), "home:tree/sub/big.bin"]);
    std::fs::write(tmp.path().join("tiny"), b"hi").unwrap();
    run(&[
        "cp",
        tmp.path().join("tiny").to_str().unwrap(),
        "home:tree/sub/tiny",
    ]);
    assert_eq!(
        run(&["ls", "--long", "home:tree/sub"]),
        "file           70000  b.bin\nfile         2500000  big.bin\nfile               2  tiny\n"
    );
    let big_back = tmp.path().join("big.back");
    run(&["cp", "home:tree/sub/big.bin", big_back.to_str().unwrap()]);
    assert_eq!(std::fs::read(&big_back).unwrap(), data(2_500_000));
    // Into a directory that does not exist: the error says which, and how to make one.
    let o = lafs(
        &[
            "cp",
            big.to_str().unwrap(),
            "home:nowhere/big.bin",
            "--node",
            node,
            "--happy",
            "4",
        ],
        None,
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("the directory \"nowhere\" could not be opened"),
        "{err}"
    );
    assert!(err.contains("lafs mkdir"), "{err}");
    // A link (ln, or cp within the grid) keeps the entry's recorded size.
    run(&["ln", "home:tree/sub/big.bin", "home:tree/sub/big2.bin"]);
    run(&["cp", "home:tree/sub/tiny", "home:tree/sub/tiny2"]);
    assert_eq!(
        run(&["ls", "-l", "home:tree/sub"]),
        "file           70000  b.bin\nfile         2500000  big.bin\nfile         2500000  big2.bin\nfile               2  tiny\nfile               2  tiny2\n"
    );
    for name in ["big.bin", "big2.bin", "tiny", "tiny2"] {
        run(&["rm", &format!("home:tree/sub/{name}")]);
    }

    // mv, ln, rm; paths through the root cap itself.
    run(&["mv", "home:tree/a.txt", "home:tree/c.txt"]);
    run(&["ln", "home:tree/c.txt", "home:copy.txt"]);
    assert_eq!(run(&["ls", "home:"]), "copy.txt\ntree/\n");
    let one = tmp.path().join("one.txt");
    run(&["cp", &format!("{root}/tree/c.txt"), one.to_str().unwrap()]);
    assert_eq!(std::fs::read(&one).unwrap(), data(5000));
    run(&["rm", "home:tree/c.txt"]);
    assert_eq!(run(&["ls", "home:tree"]), "sub/\n");
    assert!(!lafs(&["rm", "home:tree/c.txt", "--node", node], None)
        .status
        .success());

    // An immutable snapshot of the local tree, linked into home.
    let snap = run(&["mkdir", "--immutable", tree.to_str().unwrap(), "home:snap"]);
    assert!(snap.trim().starts_with("lafsir1"), "{snap}");
    assert_eq!(run(&["ls", "home:snap"]), "a.txt\nsub/\n");
    let snap_back = tmp.path().join("snap_back");
    run(&["cp", "-r", "home:snap", snap_back.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(snap_back.join("sub/b.bin")).unwrap(),
        data(70_000)
    );

    // Check of the root directory (a mutable file): versions and shares, then a share lost
    // on disk, repair with the verifycap-level check command, verify.
    let check = |extra: &[&str]| {
        let mut v = vec![
            "check",
            root.as_str(),
            "--node",
            node,
            "--happy",
            "4",
            "--json",
        ];
        v.extend_from_slice(extra);
        let o = lafs(&v, None);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
        (o.status.code(), v)
    };
    let (code, v) = check(&[]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["mutable"], true);
    assert_eq!(v["good_shares"], 4);
    let seqnum = v["seqnum"].as_u64().unwrap();
    assert!(seqnum > 1, "{v}");
    assert_eq!(v["versions"][0]["shares"].as_array().unwrap().len(), 4);
    let si = v["storage_index"].as_str().unwrap().to_owned();
    // Delete one share file of the root on one storage node.
    let mut files = Vec::new();
    let mut stack = vec![tmp.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.parent().is_some_and(|d| d.ends_with(&si))
                && p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .parse::<u8>()
                    .is_ok()
            {
                files.push(p);
            }
        }
    }
    assert_eq!(files.len(), 4, "{files:?}");
    std::fs::remove_file(&files[0]).unwrap();
    let (code, v) = check(&[]);
    assert_eq!(code, Some(2), "{v}");
    assert_eq!(v["good_shares"], 3);
    assert_eq!(v["recoverable"], true);
    let (code, v) = check(&["--repair"]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["repair"]["rebuilt"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["good_shares"], 4);
    assert_eq!(v["seqnum"].as_u64().unwrap(), seqnum);
    let o = lafs(
        &["check", &root, "--node", node, "--happy", "4", "--verify"],
        None,
    );
    let text = ok(&o);
    assert!(text.starts_with("healthy"), "{text}");
    assert!(
        text.contains(&format!("latest version: seqnum {seqnum}")),
        "{text}"
    );
    assert!(text.contains("every share read and verified"), "{text}");
    assert_eq!(run(&["ls", "home:"]), "copy.txt\nsnap/\ntree/\n");
}
