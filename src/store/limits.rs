//! Statements for rate limits and concurrency caps.

use super::Store;
use crate::error::Result;
use crate::limits::{LimitKind, LimitRow, LimitSpec};

impl Store {
    /// Set (or replace) a limit.
    pub async fn limit_set(&self, spec: &LimitSpec) -> Result<()> {
        sqlx::query(&self.sql.limit_set)
            .bind(spec.kind.as_str())
            .bind(&spec.target)
            .bind(spec.rate.as_deref())
            .bind(spec.concurrency.map(|c| c.min(i32::MAX as u32) as i32))
            .bind(spec.partition_by.as_deref())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Remove a limit; false if there was none.
    pub async fn limit_remove(&self, kind: LimitKind, target: &str) -> Result<bool> {
        Ok(sqlx::query_scalar(&self.sql.limit_remove)
            .bind(kind.as_str())
            .bind(target)
            .fetch_one(self.pool())
            .await?)
    }

    /// Every limit with its current use.
    pub async fn limit_list(&self) -> Result<Vec<LimitRow>> {
        Ok(sqlx::query_as(&self.sql.limit_list)
            .fetch_all(self.pool())
            .await?)
    }

    /// Recount running slots; release throttled tasks that have room. Returns how many.
    pub async fn limit_reconcile(&self) -> Result<i32> {
        Ok(sqlx::query_scalar(&self.sql.limit_reconcile)
            .fetch_one(self.pool())
            .await?)
    }
}
