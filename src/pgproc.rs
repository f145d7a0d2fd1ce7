//! A private PostgreSQL server started from the machine's own binaries, in a local data
//! directory: what `celeriac dev` uses when `DATABASE_URL` is not set, and what tests use when
//! they must stop or restart a server without disturbing others.
//!
//! Binaries are looked up in `$CELERIAC_PG_BIN`, then `pg_config --bindir`, then the newest
//! `/usr/lib/postgresql/*/bin`, then `$PATH`. PostgreSQL refuses to run as root; when started
//! by root, the server runs as the `postgres` system user (the data directory is given to it;
//! when a parent directory is private to root, e.g. `/root`, the data goes under `/var/tmp`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

use crate::error::{Error, Result};

/// A server we started (or found running) in a data directory.
#[derive(Debug)]
pub struct PgProc {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    port: u16,
    run_as: Option<(u32, u32)>,
    fsync: bool,
    /// Whether we started it (and so stop it on [`PgProc::stop`]).
    owned: bool,
}

/// How to start the server.
#[derive(Debug, Clone)]
pub struct PgProcOptions {
    /// Durable commits (off makes tests faster; a crash may then lose recent commits).
    pub fsync: bool,
}

impl Default for PgProcOptions {
    fn default() -> Self {
        PgProcOptions { fsync: true }
    }
}

fn err(msg: impl Into<String>) -> Error {
    Error::LocalPostgres(msg.into())
}

/// Where the PostgreSQL server binaries are.
pub fn find_bin_dir() -> Result<PathBuf> {
    let has_initdb = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Ok(dir) = std::env::var("CELERIAC_PG_BIN") {
        let d = PathBuf::from(dir);
        if has_initdb(&d) {
            return Ok(d);
        }
        return Err(err(format!(
            "CELERIAC_PG_BIN={} has no initdb/pg_ctl",
            d.display()
        )));
    }
    if let Ok(out) = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
    {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_initdb(&d) {
            return Ok(d);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| has_initdb(d))
        .collect();
    versions.sort();
    if let Some((_, d)) = versions.pop() {
        return Ok(d);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if has_initdb(&d) {
                return Ok(d);
            }
        }
    }
    Err(err(
        "no PostgreSQL server binaries found (initdb, pg_ctl). Install them \
         (Debian: `sudo apt install postgresql`) or set DATABASE_URL to an existing server",
    ))
}

/// uid/gid of the `postgres` user when we are root (PostgreSQL refuses to run as root).
fn run_as() -> Result<Option<(u32, u32)>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let user = nix::unistd::User::from_name("postgres")
        .map_err(|e| err(format!("looking up user postgres: {e}")))?
        .ok_or_else(|| {
            err("running as root, and PostgreSQL refuses to run as root, but there is no `postgres` user to run it as")
        })?;
    Ok(Some((user.uid.as_raw(), user.gid.as_raw())))
}

/// The first parent directory of `dir` that user `uid` (group `gid`) may not enter, if any.
/// Supplementary groups are not considered: when unsure, the caller moves the data elsewhere.
fn first_unreachable_ancestor(dir: &Path, uid: u32, gid: u32) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    dir.ancestors().skip(1).find_map(|a| {
        let m = std::fs::metadata(a).ok()?;
        let mode = m.mode();
        let can_enter = if m.uid() == uid {
            mode & 0o100 != 0
        } else if m.gid() == gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        (!can_enter).then(|| a.to_path_buf())
    })
}

/// A data directory under `/var/tmp` (world-enterable, kept across reboots) standing for `dir`:
/// the same path every time, so the cluster is found again on the next start.
fn reachable_fallback(dir: &Path) -> PathBuf {
    // FNV-1a: stable across builds, unlike std's hasher.
    let hash = dir
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
    PathBuf::from(format!("/var/tmp/celeriac-pgdata-{hash:016x}"))
}

fn free_port() -> Result<u16> {
    let l =
        TcpListener::bind("127.0.0.1:0").map_err(|e| err(format!("finding a free port: {e}")))?;
    let port = l.local_addr().map_err(|e| err(e.to_string()))?.port();
    Ok(port)
}

impl PgProc {
    /// Start a server in `data_dir` (creating the cluster on first use), or attach to one
    /// already running there.
    pub async fn start(data_dir: &Path, opts: PgProcOptions) -> Result<PgProc> {
        let bin_dir = find_bin_dir()?;
        let run_as = run_as()?;
        std::fs::create_dir_all(data_dir)
            .map_err(|e| err(format!("creating {}: {e}", data_dir.display())))?;
        let mut data_dir = data_dir
            .canonicalize()
            .map_err(|e| err(format!("{}: {e}", data_dir.display())))?;
        if let Some((uid, gid)) = run_as
            && let Some(private) = first_unreachable_ancestor(&data_dir, uid, gid)
        {
            let fallback = reachable_fallback(&data_dir);
            tracing::warn!(
                dir = %data_dir.display(),
                private = %private.display(),
                using = %fallback.display(),
                "the server runs as the postgres user, which cannot enter a private parent directory; \
                 keeping its data in a reachable directory instead"
            );
            std::fs::create_dir_all(&fallback)
                .map_err(|e| err(format!("creating {}: {e}", fallback.display())))?;
            data_dir = fallback;
        }
        if let Some(port) = running_port(&data_dir) {
            tracing::info!(port, dir = %data_dir.display(), "using the PostgreSQL server already running there");
            return Ok(PgProc {
                bin_dir,
                data_dir,
                port,
                run_as,
                fsync: opts.fsync,
                owned: false,
            });
        }
        let me = PgProc {
            bin_dir,
            data_dir,
            port: free_port()?,
            run_as,
            fsync: opts.fsync,
            owned: true,
        };
        if !me.data_dir.join("PG_VERSION").exists() {
            me.initdb().await?;
        }
        me.pg_ctl_start().await?;
        Ok(me)
    }

    /// `postgres://` URL of the `postgres` database.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// `postgres://` URL of database `db`.
    pub fn url_for(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The data directory in use (canonical; under `/var/tmp` when the one asked for was not
    /// reachable by the server's user).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(self.bin_dir.join(program));
        if let Some((uid, gid)) = self.run_as {
            c.uid(uid).gid(gid);
        }
        c.env_remove("PGDATA").kill_on_drop(false);
        c
    }

    async fn run(&self, mut c: Command, what: &str) -> Result<()> {
        let out = c
            .output()
            .await
            .map_err(|e| err(format!("{what}: cannot run: {e}")))?;
        if !out.status.success() {
            return Err(err(format!(
                "{what} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(())
    }

    async fn initdb(&self) -> Result<()> {
        if let Some((uid, gid)) = self.run_as {
            nix::unistd::chown(
                &self.data_dir,
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .map_err(|e| {
                err(format!(
                    "giving {} to postgres: {e}",
                    self.data_dir.display()
                ))
            })?;
        }
        let mut c = self.command("initdb");
        c.arg("-D").arg(&self.data_dir).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]);
        self.run(c, "initdb").await
    }

    async fn pg_ctl_start(&self) -> Result<()> {
        let mut server_opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=200",
            self.port
        );
        if !self.fsync {
            server_opts.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        let mut c = self.command("pg_ctl");
        c.arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(self.data_dir.join("server.log"))
            .args(["-w", "-t", "60", "-o", &server_opts, "start"]);
        self.run(c, "pg_ctl start").await?;
        tracing::info!(port = self.port, dir = %self.data_dir.display(), "private PostgreSQL started");
        Ok(())
    }

    /// Stop the server (fast mode: running transactions are rolled back), if we started it.
    pub async fn stop(&self) -> Result<()> {
        if !self.owned {
            return Ok(());
        }
        self.stop_mode("fast").await
    }

    async fn stop_mode(&self, mode: &str) -> Result<()> {
        let mut c = self.command("pg_ctl");
        c.arg("-D")
            .arg(&self.data_dir)
            .args(["-w", "-t", "60", "-m", mode, "stop"]);
        self.run(c, "pg_ctl stop").await
    }

    /// Stop and start again on the same port. `immediate` simulates a crash (no checkpoint,
    /// recovery at start); otherwise a fast, clean shutdown.
    pub async fn restart(&self, immediate: bool) -> Result<()> {
        self.stop_mode(if immediate { "immediate" } else { "fast" })
            .await?;
        self.pg_ctl_start().await
    }

    /// Stop the server and wait `down` before starting it again.
    pub async fn restart_after(&self, down: Duration, immediate: bool) -> Result<()> {
        self.stop_mode(if immediate { "immediate" } else { "fast" })
            .await?;
        tokio::time::sleep(down).await;
        self.pg_ctl_start().await
    }
}

/// The port of a server already running in `data_dir`, from its `postmaster.pid`.
fn running_port(data_dir: &Path) -> Option<u16> {
    let pid_file = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let mut lines = pid_file.lines();
    let pid: i32 = lines.next()?.trim().parse().ok()?;
    let port: u16 = lines.nth(2)?.trim().parse().ok()?;
    let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
    alive.then_some(port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_private_parent_is_found_and_the_fallback_is_stable() {
        let top = tempfile::tempdir().expect("tempdir");
        let private = top.path().join("home");
        let data = private.join("app/.celeriac/pgdata");
        std::fs::create_dir_all(&data).expect("mkdir");
        std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        // Someone else (nobody) cannot enter the 0700 directory; its owner can.
        let nobody = (65534, 65534);
        assert_eq!(
            first_unreachable_ancestor(&data, nobody.0, nobody.1),
            Some(private.clone())
        );
        let me = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        assert_eq!(first_unreachable_ancestor(&data, me.0, me.1), None);
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o711)).expect("chmod");
        assert_eq!(first_unreachable_ancestor(&data, nobody.0, nobody.1), None);

        let f = reachable_fallback(&data);
        assert_eq!(f, reachable_fallback(&data));
        assert_ne!(f, reachable_fallback(&private));
        assert!(f.starts_with("/var/tmp"));
    }
}
