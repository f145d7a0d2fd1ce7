//! Test harness: a fresh database per test (cloned from a migrated template), helpers to run
//! workers in-process or as child processes, and polls with deadlines instead of sleeps.

#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use celeriac::config::{Config, MaintenanceConfig, WorkerConfig};
use celeriac::store::Store;
use celeriac::task::TaskId;
use celeriac::worker::{Shutdown, WorkerReport};
use celeriac::{Client, Registry, Worker};
use sqlx::{Connection, Executor, PgConnection};
use tokio::task::JoinHandle;

/// Where tests create their databases: CELERIAC_TEST_DATABASE_URL (set by scripts/test), else
/// the local server. Never DATABASE_URL: that may be a real database.
pub fn admin_url() -> String {
    std::env::var("CELERIAC_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `url` with its database replaced by `db`.
pub fn url_for(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(base.len());
    let mut out = format!("{}/{db}", &base[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A fingerprint of everything that shapes the schema, so a stale template is never reused.
fn schema_fingerprint() -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for (name, sql) in celeriac::store::MIGRATIONS {
        name.hash(&mut h);
        sql.hash(&mut h);
    }
    format!("{:016x}", h.finish())
}

static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();

/// The migrated template database (created once per fingerprint, under an advisory lock so
/// parallel test processes agree).
async fn template() -> String {
    TEMPLATE
        .get_or_init(|| async {
            let name = format!("celeriac_tpl_{}", schema_fingerprint());
            let mut admin = PgConnection::connect(&admin_url())
                .await
                .expect("connect to the test PostgreSQL (set CELERIAC_TEST_DATABASE_URL)");
            admin
                .execute("SELECT pg_advisory_lock(727272)")
                .await
                .unwrap();
            sweep_stale(&mut admin).await;
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                    .bind(&name)
                    .fetch_one(&mut admin)
                    .await
                    .unwrap();
            if !exists {
                let building = format!("{name}_building");
                admin
                    .execute(format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)").as_str())
                    .await
                    .unwrap();
                admin
                    .execute(format!("CREATE DATABASE {building}").as_str())
                    .await
                    .unwrap();
                {
                    let config = Config::new(url_for(&admin_url(), &building));
                    let store = Store::connect(&config).unwrap();
                    store.migrate().await.expect("migrating the template");
                    store.pool().close().await;
                }
                admin
                    .execute(format!("ALTER DATABASE {building} RENAME TO {name}").as_str())
                    .await
                    .unwrap();
            }
            admin
                .execute("SELECT pg_advisory_unlock(727272)")
                .await
                .unwrap();
            let _ = admin.close().await;
            name
        })
        .await
        .clone()
}

/// Drop test databases left behind by test processes that no longer run.
async fn sweep_stale(admin: &mut PgConnection) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'celeriac_test_%'")
            .fetch_all(&mut *admin)
            .await
            .unwrap_or_default();
    for name in names {
        let pid: Option<i32> = name.split('_').nth(2).and_then(|p| p.parse().ok());
        let alive = pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = admin
                .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                .await;
        }
    }
}

/// A fresh database for one test, dropped when the value is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub config: Config,
    pub store: Store,
    pub client: Client,
}

impl TestDb {
    /// A database with the schema migrated.
    pub async fn new() -> TestDb {
        let tpl = template().await;
        Self::create(Some(&tpl)).await
    }

    /// An empty database (no schema), for migration tests.
    pub async fn empty() -> TestDb {
        Self::create(None).await
    }

    async fn create(template: Option<&str>) -> TestDb {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!(
            "celeriac_test_{}_{}_{}",
            std::process::id(),
            n,
            uuid::Uuid::new_v4()
                .simple()
                .to_string()
                .get(..6)
                .unwrap_or("x")
        );
        let mut admin = PgConnection::connect(&admin_url()).await.unwrap();
        let sql = match template {
            Some(t) => format!("CREATE DATABASE {name} TEMPLATE {t}"),
            None => format!("CREATE DATABASE {name}"),
        };
        // A template in use by a concurrent CREATE DATABASE makes this fail: retry.
        let mut tries = 0;
        loop {
            match admin.execute(sql.as_str()).await {
                Ok(_) => break,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("creating {name}: {e}"),
            }
        }
        let _ = admin.close().await;
        let url = url_for(&admin_url(), &name);
        let mut config = Config::new(url.clone());
        config.pool_size = 5;
        let store = Store::connect(&config).unwrap();
        let client = Client::from_store(store.clone(), &config);
        TestDb {
            name,
            url,
            config,
            store,
            client,
        }
    }

    /// One SQL connection of our own (for raw SQL in tests).
    pub async fn conn(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.unwrap()
    }

    /// Run a scalar query.
    pub async fn scalar<T>(&self, sql: &str) -> T
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
    {
        sqlx::query_scalar(sql)
            .fetch_one(self.store.pool())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Run a statement.
    pub async fn exec(&self, sql: &str) {
        sqlx::raw_sql(sql)
            .execute(self.store.pool())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The state column of a task.
    pub async fn state(&self, id: TaskId) -> String {
        sqlx::query_scalar("SELECT state FROM celeriac.tasks WHERE id = $1")
            .bind(id.0)
            .fetch_one(self.store.pool())
            .await
            .unwrap()
    }

    /// Tasks not yet finished.
    pub async fn unfinished(&self) -> i64 {
        self.scalar("SELECT count(*) FROM celeriac.tasks WHERE state NOT IN ('SUCCESS','FAILURE','REVOKED')")
            .await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let pool = self.store.pool().clone();
        // Dropping needs async I/O; do it on a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async move {
                    pool.close().await;
                    if let Ok(mut admin) = PgConnection::connect(&admin_url()).await {
                        let _ = admin
                            .execute(
                                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                            )
                            .await;
                    }
                });
            }
        })
        .join();
    }
}

/// Poll `check` every 20 ms until it returns Some, or panic after `within` with `what`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {within:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Worker settings for tests: quick heartbeats and leases.
pub fn test_worker_config(queues: &[&str], concurrency: usize) -> WorkerConfig {
    WorkerConfig {
        queues: queues.iter().map(|q| q.to_string()).collect(),
        concurrency,
        poll_interval: Duration::from_millis(500),
        heartbeat_interval: Duration::from_millis(300),
        lease: Duration::from_secs(2),
        shutdown_grace: Duration::from_secs(10),
        cancel_grace: Duration::from_millis(500),
        ..WorkerConfig::default()
    }
}

/// Maintenance settings for tests: rescue often.
pub fn test_maintenance() -> MaintenanceConfig {
    MaintenanceConfig {
        rescue_interval: Duration::from_millis(300),
        leader_ttl: Duration::from_secs(3),
        ..MaintenanceConfig::default()
    }
}

/// A worker running in this process.
pub struct RunningWorker {
    pub id: uuid::Uuid,
    pub shutdown: Shutdown,
    pub handle: JoinHandle<celeriac::Result<WorkerReport>>,
}

impl RunningWorker {
    pub fn start(db: &TestDb, registry: Registry, config: WorkerConfig) -> RunningWorker {
        Self::start_with(&db.config, registry, config, Some(test_maintenance()))
    }

    pub fn start_with(
        config: &Config,
        registry: Registry,
        wcfg: WorkerConfig,
        maintenance: Option<MaintenanceConfig>,
    ) -> RunningWorker {
        let worker = Worker::new(config, registry, wcfg, maintenance).unwrap();
        let id = worker.id();
        let shutdown = Shutdown::new();
        let handle = tokio::spawn(worker.run(shutdown.clone()));
        RunningWorker {
            id,
            shutdown,
            handle,
        }
    }

    /// Graceful stop; returns the report.
    pub async fn stop(self) -> WorkerReport {
        self.shutdown.begin();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("worker did not stop within 30 s")
            .expect("worker task panicked")
            .expect("worker failed")
    }
}

/// Counts how many times each task id ran (for exactly-once checks).
#[derive(Clone, Default)]
pub struct RunLog(pub Arc<Mutex<HashMap<TaskId, u32>>>);

impl RunLog {
    pub fn record(&self, id: TaskId) {
        *self.0.lock().unwrap().entry(id).or_default() += 1;
    }
    pub fn count(&self, id: TaskId) -> u32 {
        self.0.lock().unwrap().get(&id).copied().unwrap_or(0)
    }
    pub fn total(&self) -> u32 {
        self.0.lock().unwrap().values().sum()
    }
    pub fn distinct(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    pub fn max(&self) -> u32 {
        self.0.lock().unwrap().values().copied().max().unwrap_or(0)
    }
}

/// The `celeriac` binary built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_celeriac"))
}

/// Run the CLI to completion: (exit code, stdout, stderr).
pub async fn cli(db: &TestDb, args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(bin())
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Start `celeriac worker …` as a child process on `db`.
pub fn spawn_worker_process(db: &TestDb, args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(bin())
        .arg("worker")
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Send a signal to a child process.
pub fn signal(child: &tokio::process::Child, sig: nix::sys::signal::Signal) {
    let pid = child.id().expect("child already reaped") as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
}

/// A dedicated tokio runtime is not needed: tests use #[tokio::test(flavor = "multi_thread")].
pub static INIT: OnceLock<()> = OnceLock::new();

/// Log to the test output when RUST_LOG is set.
pub fn init_logs() {
    INIT.get_or_init(|| {
        if std::env::var("RUST_LOG").is_ok() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
    });
}
