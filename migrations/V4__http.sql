-- HTTP API, dashboard and metrics: what the server reads that the core schema does not keep.
--
-- The token `celeriac.` means "Celeriac's own schema" (see V1__core.sql). Never edit this file
-- once released: add a new V<n>__*.sql instead.

-- ─── manual retries ─────────────────────────────────────────────────────────────────────────────
-- POST /api/v1/tasks/{id}/retry runs a finished FAILURE or REVOKED task again as a new task: a
-- copy with a new id whose headers carry `retry_of` (the original). The original keeps its
-- outcome, error and timestamps, and records its copy here; a task is retried at most once (the
-- copy can be retried in turn), so a double click cannot run it twice.
-- Adding a nullable column without a default only changes the catalog: no table rewrite.
ALTER TABLE celeriac.tasks ADD COLUMN retried_as uuid;

-- ─── task listing ─────────────────────────────────────────────────────────────────────────────
-- GET /api/v1/tasks lists tasks newest first (created_at, then seq) with keyset pagination, one
-- branch per state. This index lets each state's branch read only the rows of its page, and
-- turns `since` and the cursor into index ranges, so a page costs the same with a million
-- finished tasks or a backlog of a million waiting ones.
-- Cost: it covers every state but STARTED. A claim moves a row to STARTED, so claims never
-- insert into it; a completion inserts once (the finished row), and so does an enqueue (or a
-- retry re-queue) of a waiting row. Running rows are listed through tasks_running (worker_id is
-- set exactly while STARTED): there are at most as many as there are worker slots.
CREATE INDEX tasks_list ON celeriac.tasks (state, created_at, seq)
    WHERE state IN ('SCHEDULED', 'PENDING', 'THROTTLED', 'RETRY', 'SUCCESS', 'FAILURE', 'REVOKED');

-- ─── metrics ────────────────────────────────────────────────────────────────────────────────────
-- Workers count what they run in memory and add what they counted since their last flush
-- (deltas) to these rows on every heartbeat, and once more when they stop. Sums only grow, a
-- worker that dies loses at most one heartbeat interval of counts, and nothing has to be folded
-- when a worker row is pruned. The HTTP server reads them for /metrics and the dashboard.

-- Cumulative counters and histograms per task name, since the schema was created.
-- Histogram buckets are per-bucket (not cumulative) counts for the upper bounds listed in
-- src/metrics.rs (BUCKET_BOUNDS), plus a last bucket for +Inf.
CREATE TABLE celeriac.task_metrics (
    name            text             PRIMARY KEY,
    -- Attempts started (claimed and handed to a handler).
    started         bigint           NOT NULL DEFAULT 0,
    succeeded       bigint           NOT NULL DEFAULT 0,
    failed          bigint           NOT NULL DEFAULT 0,
    -- Attempts that asked for a retry (the task runs again later).
    retried         bigint           NOT NULL DEFAULT 0,
    -- Attempts revoked while running (revoke with terminate).
    revoked         bigint           NOT NULL DEFAULT 0,
    -- Handler run time of finished attempts, seconds.
    runtime_buckets bigint[]         NOT NULL,
    runtime_sum     double precision NOT NULL DEFAULT 0,
    runtime_count   bigint           NOT NULL DEFAULT 0,
    -- From the moment an attempt was due (enqueue, countdown/ETA, retry time) to its start,
    -- database clock, seconds.
    latency_buckets bigint[]         NOT NULL,
    latency_sum     double precision NOT NULL DEFAULT 0,
    latency_count   bigint           NOT NULL DEFAULT 0,
    updated_at      timestamptz      NOT NULL DEFAULT now()
);

-- Finished attempts per queue in 10-second windows (database clock, window of the flush): the
-- dashboard's throughput chart and each queue's rate over the last minute, in a few hundred
-- rows whatever the size of the tasks table. Pruned by the maintenance leader after a day.
CREATE TABLE celeriac.queue_throughput (
    bucket     timestamptz NOT NULL,
    queue      text        NOT NULL,
    succeeded  bigint      NOT NULL DEFAULT 0,
    failed     bigint      NOT NULL DEFAULT 0,
    retried    bigint      NOT NULL DEFAULT 0,
    revoked    bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, queue)
);
