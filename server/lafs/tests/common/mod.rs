//! Set-up shared by the tests of the `lafs` binary: children killed on drop, their output read
//! line by line with bounded waits.
#![allow(dead_code)] // Each test binary uses a part of it.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ExitStatus};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// Kills the child (SIGKILL) and reaps it on drop, unless the test took it out first: a
/// failing test leaves no node running.
pub(crate) struct ChildGuard(pub(crate) Option<Child>);

impl ChildGuard {
    /// The running child.
    pub(crate) fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }

    /// Its exit status, if it exits within `limit` (polled every 50 ms).
    pub(crate) fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(s) = self.child().try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// What is left of its stderr, if piped and not taken (read to the end: call once it
    /// exited, or to report a failure).
    pub(crate) fn stderr(&mut self) -> String {
        let mut s = String::new();
        if let Some(e) = self.0.as_mut().and_then(|c| c.stderr.as_mut()) {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The lines of `r`, read on a thread (so waits can be bounded with `recv_timeout`).
pub(crate) fn lines(r: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads `n` lines `key = "value"` (as `lafs run` prints its URLs) before `deadline`; `None`
/// if they did not all come in time.
pub(crate) fn read_key_values(
    rx: &Receiver<String>,
    n: usize,
    deadline: Instant,
) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    while out.len() < n {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .ok()?;
        let (k, v) = line.split_once(" = ").unwrap();
        out.push((k.to_owned(), v.trim_matches('"').to_owned()));
    }
    Some(out)
}

/// The first line starting with `prefix` within `limit` (earlier lines are skipped).
pub(crate) fn wait_for_line(rx: &Receiver<String>, prefix: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.starts_with(prefix) => return line,
            Ok(_) => {}
            Err(e) => panic!("no line starting with {prefix:?}: {e}"),
        }
    }
}
