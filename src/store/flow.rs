//! Statements for workflows (canvas, groups) and named locks.

use std::time::Duration;

use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

use super::Store;
use crate::error::Result;

/// A lock's current tenure (`lock_get`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LockRow {
    /// Fencing token of the tenure.
    pub token: i64,
    /// Who holds it (free text).
    pub holder: Option<String>,
    /// Seconds until it expires.
    pub expires_in: f64,
}

impl Store {
    /// Apply a canvas (JSON description) through `executor`; returns the SQL API's answer.
    pub async fn canvas_apply<'e, E: PgExecutor<'e>>(
        &self,
        executor: E,
        canvas: &Value,
    ) -> Result<Value> {
        Ok(sqlx::query_scalar(&self.sql.canvas_apply)
            .bind(canvas)
            .fetch_one(executor)
            .await?)
    }

    /// A group's or chord's state and results as one object; `None` if unknown.
    pub async fn group_get(&self, id: Uuid) -> Result<Option<Value>> {
        Ok(sqlx::query_scalar(&self.sql.group_get)
            .bind(id)
            .fetch_one(self.pool())
            .await?)
    }

    /// Delete up to `chunk` groups finished more than `retention` ago.
    pub async fn group_prune_finished(&self, retention: Duration, chunk: u32) -> Result<u64> {
        Ok(sqlx::query(&self.sql.group_prune_finished)
            .bind(retention.as_secs_f64())
            .bind(chunk.min(i32::MAX as u32) as i32)
            .execute(self.pool())
            .await?
            .rows_affected())
    }

    /// Take lock `name` for `ttl` if free; its token, or `None` when held.
    pub async fn lock_try(
        &self,
        name: &str,
        ttl: Duration,
        holder: Option<&str>,
    ) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(&self.sql.lock_try)
            .bind(name)
            .bind(ttl.as_secs_f64())
            .bind(holder)
            .fetch_one(self.pool())
            .await?)
    }

    /// Release lock `name` held with `token`; false if that tenure is over.
    pub async fn lock_release(&self, name: &str, token: i64) -> Result<bool> {
        Ok(sqlx::query_scalar(&self.sql.lock_release)
            .bind(name)
            .bind(token)
            .fetch_one(self.pool())
            .await?)
    }

    /// Extend lock `name` held with `token` to `ttl` from now; false if that tenure is over.
    pub async fn lock_extend(&self, name: &str, token: i64, ttl: Duration) -> Result<bool> {
        Ok(sqlx::query_scalar(&self.sql.lock_extend)
            .bind(name)
            .bind(token)
            .bind(ttl.as_secs_f64())
            .fetch_one(self.pool())
            .await?)
    }

    /// The current tenure of lock `name`, if held.
    pub async fn lock_get(&self, name: &str) -> Result<Option<LockRow>> {
        Ok(sqlx::query_as(&self.sql.lock_get)
            .bind(name)
            .fetch_optional(self.pool())
            .await?)
    }
}
