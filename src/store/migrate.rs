//! Schema migrations with refinery, driven through sqlx (refinery has no sqlx driver, so this
//! module implements its async traits on a sqlx connection). The migrations are rendered for
//! the configured schema; the history table is `<schema>.refinery_schema_history`.

use refinery_core::traits::r#async::{AsyncMigrate, AsyncQuery, AsyncTransaction};
use refinery_core::{Migration, Runner};
use std::future::Future;

use futures_util::future::BoxFuture;
use sqlx::{Executor, PgConnection, Row};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Store;
use crate::error::{Error, Result};

/// Every migration, in order. Add new files here; never edit one that may have been applied.
pub const MIGRATIONS: &[(&str, &str)] = &[
    ("V1__core", include_str!("../../migrations/V1__core.sql")),
    ("V2__beat", include_str!("../../migrations/V2__beat.sql")),
    ("V4__http", include_str!("../../migrations/V4__http.sql")),
    (
        "V5__workflows_locks_unique",
        include_str!("../../migrations/V5__workflows_locks_unique.sql"),
    ),
    (
        "V6__limits",
        include_str!("../../migrations/V6__limits.sql"),
    ),
    (
        "V7__lock_attempts",
        include_str!("../../migrations/V7__lock_attempts.sql"),
    ),
];

/// What `migrate` found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationStatus {
    /// Versions recorded in the history table after the call.
    pub applied: Vec<i32>,
    /// Migrations this binary knows that are not applied.
    pub pending: Vec<String>,
    /// Migrations applied by this call.
    pub newly_applied: Vec<String>,
}

impl MigrationStatus {
    /// Every migration this binary knows is applied.
    pub fn is_current(&self) -> bool {
        self.pending.is_empty()
    }
}

/// A sqlx connection seen through refinery's driver traits.
struct SqlxConn<'c>(&'c mut PgConnection);

impl AsyncTransaction for SqlxConn<'_> {
    type Error = sqlx::Error;

    fn execute<'a, T: Iterator<Item = &'a str> + Send + 'a>(
        &'a mut self,
        queries: T,
    ) -> impl Future<Output = std::result::Result<usize, Self::Error>> + Send + 'a {
        let queries: Vec<String> = queries.map(str::to_owned).collect();
        run_in_transaction(&mut *self.0, queries)
    }
}

/// Run multi-statement SQL texts (simple query protocol) in one transaction.
fn run_in_transaction(
    conn: &mut PgConnection,
    queries: Vec<String>,
) -> BoxFuture<'_, std::result::Result<usize, sqlx::Error>> {
    Box::pin(async move {
        conn.execute("BEGIN").await?;
        for query in &queries {
            if let Err(e) = conn.execute(query.as_str()).await {
                let _ = conn.execute("ROLLBACK").await;
                return Err(e);
            }
        }
        conn.execute("COMMIT").await?;
        Ok(queries.len())
    })
}

impl AsyncQuery<Vec<Migration>> for SqlxConn<'_> {
    fn query<'a>(
        &'a mut self,
        query: &'a str,
    ) -> impl Future<Output = std::result::Result<Vec<Migration>, Self::Error>> + Send + 'a {
        let rows = (&mut *self.0).fetch_all(query);
        async move {
            let rows = rows.await?;
            let mut applied = Vec::with_capacity(rows.len());
            for row in rows {
                let version: i32 = row.try_get(0)?;
                let name: String = row.try_get(1)?;
                let applied_on: String = row.try_get(2)?;
                let checksum: String = row.try_get(3)?;
                let applied_on = OffsetDateTime::parse(&applied_on, &Rfc3339)
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH);
                let checksum = checksum.parse::<u64>().map_err(|e| {
                    sqlx::Error::Decode(format!("bad checksum {checksum:?} in history: {e}").into())
                })?;
                applied.push(Migration::applied(version, name, applied_on, checksum));
            }
            Ok(applied)
        }
    }
}

impl AsyncMigrate for SqlxConn<'_> {}

fn rendered(store: &Store) -> Result<Vec<Migration>> {
    MIGRATIONS
        .iter()
        .map(|(name, sql)| {
            Migration::unapplied(&format!("{name}.sql"), &store.schema().render(sql))
                .map_err(|e| Error::Migration(format!("{name}: {e}")))
        })
        .collect()
}

fn history_table(store: &Store) -> String {
    format!("{}.refinery_schema_history", store.schema().name())
}

/// Run one statement with an optional text parameter on `conn`. (A boxed future with its own
/// lifetime keeps the callers' futures `Send`: sqlx's executor impls are not general enough
/// for the compiler to prove it inside a larger async block.)
fn exec_on<'c>(
    conn: &'c mut PgConnection,
    sql: &'c str,
    param: Option<&'c str>,
) -> BoxFuture<'c, std::result::Result<(), sqlx::Error>> {
    Box::pin(async move {
        match param {
            Some(p) => sqlx::query(sql).bind(p).execute(conn).await?,
            None => conn.execute(sql).await?,
        };
        Ok(())
    })
}

/// Run refinery on `conn`.
fn run_runner<'c>(
    conn: &'c mut PgConnection,
    runner: &'c Runner,
) -> BoxFuture<'c, std::result::Result<refinery_core::Report, refinery_core::Error>> {
    Box::pin(async move { runner.run_async(&mut SqlxConn(conn)).await })
}

/// Apply pending migrations under a session advisory lock, so concurrent starts are safe.
pub(super) async fn migrate(store: &Store) -> Result<MigrationStatus> {
    let migrations = rendered(store)?;
    let mut runner = Runner::new(&migrations)
        .set_abort_divergent(true)
        .set_abort_missing(false);
    runner.set_migration_table_name(history_table(store));
    let mut conn = store.pool().acquire().await?;
    let schema = store.schema().name().to_string();
    let sql = store.statements();
    exec_on(&mut conn, &sql.migrate_lock, Some(&schema)).await?;
    let outcome = match exec_on(&mut conn, &sql.migrate_create_schema, None).await {
        Err(e) => Err(Error::Database(e)),
        Ok(()) => run_runner(&mut conn, &runner)
            .await
            .map_err(|e| Error::Migration(e.to_string()))
            .map(|report| {
                report
                    .applied_migrations()
                    .iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
            }),
    };
    // Unlock whatever happened; a lost connection releases the lock by itself.
    let _ = exec_on(&mut conn, &sql.migrate_unlock, Some(&schema)).await;
    drop(conn);
    let newly_applied = outcome?;
    let mut st = status(store).await?;
    st.newly_applied = newly_applied;
    Ok(st)
}

/// Read the history table.
pub(super) async fn status(store: &Store) -> Result<MigrationStatus> {
    let (exists,): (bool,) = sqlx::query_as(&store.statements().migrate_history_exists)
        .bind(store.schema().name())
        .fetch_one(store.pool())
        .await?;
    let applied: Vec<i32> = if exists {
        sqlx::query_scalar(&store.statements().migrate_applied)
            .fetch_all(store.pool())
            .await?
    } else {
        vec![]
    };
    let pending = rendered(store)?
        .iter()
        .filter(|m| !applied.contains(&m.version()))
        .map(|m| m.to_string())
        .collect();
    Ok(MigrationStatus {
        applied,
        pending,
        newly_applied: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Library futures must be spawnable.
    #[allow(dead_code)]
    fn public_futures_are_send(store: Store, client: crate::Client) {
        fn is_send<T: Send>(_: T) {}
        is_send(async move { store.migrate().await });
        is_send(async move { client.enqueue(crate::NewTask::new("x")).await });
    }

    #[test]
    fn migrations_render_for_other_schemas() {
        let schema = crate::store::Schema::new("jobs").unwrap();
        for (name, sql) in MIGRATIONS {
            for line in schema.render(sql).lines() {
                let code = line.split("--").next().unwrap_or("");
                let survives = code
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .any(|w| w == "celeriac");
                assert!(
                    !survives,
                    "{name}: `celeriac` survives rendering in {line:?}"
                );
            }
        }
    }

    #[test]
    fn every_migration_file_is_listed_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".sql"))
            .map(|n| n.trim_end_matches(".sql").to_string())
            .collect();
        files.sort_by_key(|n| {
            n[1..]
                .split("__")
                .next()
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(u32::MAX)
        });
        let listed: Vec<String> = MIGRATIONS.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(files, listed);
    }
}
