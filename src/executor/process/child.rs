//! One child process of the pool: spawned in its own process group (so a Ctrl-C on the
//! worker's terminal does not reach it), its stdout parsed as protocol lines by a reader task,
//! its stderr forwarded to the worker's log (the last lines are kept for error messages).

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::mpsc;

use super::PoolConfig;
use super::protocol::{self, FromChild, Line};

/// Lines of a child's stderr kept for error messages.
const STDERR_TAIL: usize = 30;

/// A running child.
pub(crate) struct Child {
    pub(crate) pid: u32,
    proc: tokio::process::Child,
    stdin: Option<ChildStdin>,
    messages: mpsc::UnboundedReceiver<FromChild>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    /// Tasks this child finished.
    pub(crate) tasks_run: u64,
}

impl Child {
    /// Start a child and wait for its `ready` line.
    pub(crate) async fn spawn(cfg: &PoolConfig, n: u64) -> Result<Child, String> {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(format!("exec {}", cfg.command))
            .env("CELERIAC_CHILD", n.to_string())
            .env("CELERIAC_PROTOCOL", protocol::VERSION.to_string())
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut proc = cmd
            .spawn()
            .map_err(|e| format!("cannot start {:?}: {e}", cfg.command))?;
        let pid = proc.id().unwrap_or_default();
        let stdin = proc.stdin.take();
        let stdout = proc.stdout.take();
        let stderr = proc.stderr.take();
        let (tx, messages) = mpsc::unbounded_channel();
        if let Some(stdout) = stdout {
            tokio::spawn(read_protocol(stdout, tx, pid));
        }
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(stderr) = stderr {
            tokio::spawn(read_stderr(stderr, stderr_tail.clone(), pid));
        }
        let mut child = Child {
            pid,
            proc,
            stdin,
            messages,
            stderr_tail,
            tasks_run: 0,
        };
        let ready = tokio::time::timeout(cfg.startup_timeout, async {
            loop {
                match child.messages.recv().await {
                    Some(FromChild::Ready { .. }) => return true,
                    Some(other) => {
                        tracing::debug!(child.pid = pid, message = ?other, "message before ready ignored")
                    }
                    None => return false,
                }
            }
        })
        .await;
        match ready {
            Ok(true) => {
                tracing::debug!(child.pid = pid, child.n = n, "child ready");
                Ok(child)
            }
            Ok(false) => {
                let how = child.exit_description(Duration::from_secs(2)).await;
                Err(format!(
                    "child {pid} ({:?}) {how} before it was ready{}",
                    cfg.command,
                    child.stderr_excerpt()
                ))
            }
            Err(_) => {
                child.kill();
                Err(format!(
                    "child {pid} ({:?}) did not say it was ready within {:?}{}",
                    cfg.command,
                    cfg.startup_timeout,
                    child.stderr_excerpt()
                ))
            }
        }
    }

    /// Write one protocol line.
    pub(crate) async fn send(&mut self, line: &[u8]) -> std::io::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| std::io::Error::other("stdin already closed"))?;
        stdin.write_all(line).await?;
        stdin.write_all(b"\n").await?;
        stdin.flush().await
    }

    /// The next protocol message; `None` once the child closed its stdout (it is dying).
    pub(crate) async fn recv(&mut self) -> Option<FromChild> {
        self.messages.recv().await
    }

    /// SIGKILL the child's whole process group (it and whatever it started).
    pub(crate) fn kill(&mut self) {
        if self.pid > 0 {
            let _ = killpg(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
        }
        let _ = self.proc.start_kill();
    }

    /// Resident memory in KiB (Linux), if readable.
    pub(crate) fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// How the child ended ("exited with code 1", "was killed by SIGKILL"), waiting up to
    /// `within` for it; kills it if it is still alive then.
    pub(crate) async fn exit_description(&mut self, within: Duration) -> String {
        match tokio::time::timeout(within, self.proc.wait()).await {
            Ok(Ok(status)) => describe(status),
            Ok(Err(e)) => format!("could not be waited for ({e})"),
            Err(_) => {
                self.kill();
                match tokio::time::timeout(Duration::from_secs(2), self.proc.wait()).await {
                    Ok(Ok(status)) => format!("stopped answering and {}", describe(status)),
                    _ => "stopped answering and was killed".into(),
                }
            }
        }
    }

    /// Ask the child to exit (close its stdin), wait up to `grace`, then kill it.
    pub(crate) async fn stop(mut self, grace: Duration) {
        drop(self.stdin.take());
        if tokio::time::timeout(grace, self.proc.wait()).await.is_err() {
            tracing::warn!(
                child.pid = self.pid,
                "child did not exit when asked; killing it"
            );
            self.kill();
            let _ = tokio::time::timeout(Duration::from_secs(2), self.proc.wait()).await;
        }
    }

    /// The last lines of stderr, as an indented block (empty when there were none).
    pub(crate) fn stderr_excerpt(&self) -> String {
        let tail = self
            .stderr_tail
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default();
        if tail.is_empty() {
            String::new()
        } else {
            format!(
                "; its last stderr lines:\n{}",
                tail.into_iter().collect::<Vec<_>>().join("\n")
            )
        }
    }

    /// The last lines of stderr.
    pub(crate) fn stderr_lines(&self) -> String {
        self.stderr_tail
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // A child dropped while alive (the pool is gone, or a leased task was aborted) must not
        // outlive us: kill its group. Harmless when it already exited.
        if matches!(self.proc.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

pub(crate) fn signal_pid(pid: u32, sig: Signal) {
    if pid > 0 {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), sig);
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        format!("exited with code {code}")
    } else if let Some(sig) = status.signal() {
        let name = Signal::try_from(sig)
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|_| format!("signal {sig}"));
        format!("was killed by {name}")
    } else {
        format!("ended ({status})")
    }
}

async fn read_protocol(
    stdout: tokio::process::ChildStdout,
    tx: mpsc::UnboundedSender<FromChild>,
    pid: u32,
) {
    let mut reader = BufReader::new(stdout);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                match protocol::parse_line(&line) {
                    Line::Message(m) => {
                        if tx.send(m).is_err() {
                            break;
                        }
                    }
                    Line::Unknown(what) => {
                        tracing::debug!(child.pid = pid, "unknown protocol message ignored: {what}")
                    }
                    Line::Noise(text) if text.is_empty() => {}
                    Line::Noise(text) => {
                        tracing::warn!(
                            child.pid = pid,
                            "stray output on the protocol channel ignored: {text}"
                        )
                    }
                }
            }
            Err(e) => {
                tracing::warn!(child.pid = pid, error = %e, "reading from child failed");
                break;
            }
        }
    }
}

async fn read_stderr(
    stderr: tokio::process::ChildStderr,
    tail: Arc<Mutex<VecDeque<String>>>,
    pid: u32,
) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                if line.is_empty() {
                    continue;
                }
                tracing::info!(child.pid = pid, "{line}");
                if let Ok(mut t) = tail.lock() {
                    if t.len() == STDERR_TAIL {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            }
        }
    }
}
