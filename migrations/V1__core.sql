-- Celeriac core schema: tasks (with their results), workers, queues, leases, the SQL API.
--
-- The token `celeriac.` always means "Celeriac's own schema": `celeriac migrate --schema other`
-- renders this file with `other.` instead (schema names are restricted to [a-z_][a-z0-9_]*), and
-- the NOTIFY channels (`celeriac.wakeup`, `celeriac.done`, `celeriac.control`) follow the schema.
-- Never edit this file once released: add a new V<n>__*.sql instead.

-- ─── tasks ──────────────────────────────────────────────────────────────────────────────────────
-- One row per task from enqueue until it is pruned (default: 1 day after it finished).
-- Lifecycle of `state`:
--   SCHEDULED ─(run_at reached)─► PENDING ─(claimed)─► STARTED ─► SUCCESS | FAILURE | REVOKED
--                                    ▲                    │
--   RETRY ─(run_at reached)──────────┘◄─(retry, worker lost, hand-back on shutdown)
-- SCHEDULED and RETRY rows wait for `run_at` (countdown/ETA, retry backoff); only PENDING rows
-- are claimable, so the claim index never walks over rows that are not due yet.
-- Celery's view of the state is `celeriac.celery_state(state, retries, progress_state)`.
CREATE TABLE celeriac.tasks (
    id                uuid             PRIMARY KEY,
    -- FIFO tie-breaker within a priority (caller-supplied ids are random).
    seq               bigint           GENERATED ALWAYS AS IDENTITY,
    name              text             NOT NULL,
    queue             text             NOT NULL,
    state             text             NOT NULL,
    -- 0..255, higher runs first.
    priority          smallint         NOT NULL DEFAULT 0,
    args              jsonb            NOT NULL DEFAULT '[]',
    kwargs            jsonb            NOT NULL DEFAULT '{}',
    headers           jsonb            NOT NULL DEFAULT '{}',
    created_at        timestamptz      NOT NULL DEFAULT now(),
    -- Not claimable before this instant (countdown / ETA / retry backoff).
    run_at            timestamptz      NOT NULL DEFAULT now(),
    -- Not started by then → REVOKED with revoked_reason 'expired'.
    expires_at        timestamptz,
    started_at        timestamptz,
    finished_at       timestamptz,
    -- Incremented by every claim; completions must match it (fencing against stale attempts).
    attempt           integer          NOT NULL DEFAULT 0,
    -- Celery's request.retries: retries asked for by the task (or its policy) so far.
    retries           integer          NOT NULL DEFAULT 0,
    -- Attempts whose worker died (heartbeat expired) while running them.
    lost              integer          NOT NULL DEFAULT 0,
    -- Retry policy and time limits; NULL means "the task's registered default".
    max_retries       integer,
    retry_delay       double precision,
    retry_backoff     double precision,
    retry_backoff_max double precision,
    retry_jitter      boolean,
    soft_time_limit   double precision,
    time_limit        double precision,
    ignore_result     boolean          NOT NULL DEFAULT false,
    -- The worker running the current attempt (state STARTED).
    worker_id         uuid,
    result            jsonb,
    -- {"type": ..., "message": ..., "traceback": ...} of the failure (or of the last retry).
    error             jsonb,
    -- A custom state reported by the running task (Celery's update_state), with its meta.
    progress_state    text,
    progress          jsonb,
    revoked_reason    text,
    -- revoke(terminate=true) on a running task: the worker cancels it.
    terminate         boolean          NOT NULL DEFAULT false,

    CONSTRAINT tasks_state_valid CHECK (state IN
        ('SCHEDULED', 'PENDING', 'STARTED', 'RETRY', 'SUCCESS', 'FAILURE', 'REVOKED')),
    CONSTRAINT tasks_name_valid CHECK (name <> '' AND length(name) <= 255),
    CONSTRAINT tasks_queue_valid CHECK (queue <> '' AND length(queue) <= 255),
    CONSTRAINT tasks_priority_range CHECK (priority BETWEEN 0 AND 255),
    CONSTRAINT tasks_args_array CHECK (jsonb_typeof(args) = 'array'),
    CONSTRAINT tasks_kwargs_object CHECK (jsonb_typeof(kwargs) = 'object'),
    CONSTRAINT tasks_headers_object CHECK (jsonb_typeof(headers) = 'object'),
    CONSTRAINT tasks_max_retries_positive CHECK (max_retries >= 0),
    CONSTRAINT tasks_time_limits_positive CHECK (soft_time_limit > 0 AND time_limit > 0),
    CONSTRAINT tasks_worker_iff_started CHECK ((state = 'STARTED') = (worker_id IS NOT NULL))
);

-- The claim query: per queue, highest priority first, FIFO within a priority. Only ready rows.
CREATE INDEX tasks_ready ON celeriac.tasks (queue, priority DESC, run_at, seq)
    WHERE state = 'PENDING';
-- Rows waiting for their run_at: the next wake-up instant per queue, and staging.
CREATE INDEX tasks_waiting ON celeriac.tasks (queue, run_at)
    WHERE state IN ('SCHEDULED', 'RETRY');
-- Running tasks by worker: heartbeats, rescue of dead workers' tasks, inspect. Keyed on
-- worker_id (set exactly while STARTED) rather than on state, so statements that touch tasks by
-- id, such as completions, cannot be planned through it from stale statistics.
CREATE INDEX tasks_running ON celeriac.tasks (worker_id)
    WHERE worker_id IS NOT NULL;
-- Pruning finished rows after the retention.
CREATE INDEX tasks_finished ON celeriac.tasks (finished_at)
    WHERE state IN ('SUCCESS', 'FAILURE', 'REVOKED');

-- A queue table churns: vacuum it early so dead tuples do not pile up between runs.
ALTER TABLE celeriac.tasks SET (
    fillfactor = 85,
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.02
);

-- ─── workers ────────────────────────────────────────────────────────────────────────────────────
-- One row per live worker process. A worker whose expires_at has passed is dead: its STARTED
-- tasks are rescued (back to PENDING, or FAILURE WorkerLostError after too many losses).
CREATE TABLE celeriac.workers (
    id            uuid        PRIMARY KEY,
    hostname      text        NOT NULL,
    pid           integer     NOT NULL,
    queues        text[]      NOT NULL,
    concurrency   integer     NOT NULL,
    version       text        NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    -- Set when the worker received SIGTERM and stopped claiming.
    stopping      boolean     NOT NULL DEFAULT false,
    info          jsonb       NOT NULL DEFAULT '{}'
);

-- ─── queues ─────────────────────────────────────────────────────────────────────────────────────
-- Per-queue settings. Rows are created by workers for the queues they consume and by settings
-- changes; a queue without a row behaves with the defaults.
CREATE TABLE celeriac.queues (
    name        text        PRIMARY KEY,
    paused      boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT queues_name_valid CHECK (name <> '' AND length(name) <= 255)
);

-- ─── leases ─────────────────────────────────────────────────────────────────────────────────────
-- Named leader leases (maintenance, beat). `token` increases whenever the holder changes, so a
-- former leader can be fenced out.
CREATE TABLE celeriac.leases (
    name        text        PRIMARY KEY,
    holder      uuid        NOT NULL,
    token       bigint      NOT NULL,
    acquired_at timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);

-- ─── SQL API ────────────────────────────────────────────────────────────────────────────────────

-- Celery's name for a row's state: waiting rows are PENDING (or RETRY once retried), a running
-- task that reported a custom state (e.g. PROGRESS) shows it.
CREATE FUNCTION celeriac.celery_state(state text, retries integer, progress_state text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN state IN ('SCHEDULED', 'PENDING') AND retries > 0 THEN 'RETRY'
        WHEN state = 'SCHEDULED' THEN 'PENDING'
        WHEN state = 'STARTED' AND progress_state IS NOT NULL THEN progress_state
        ELSE state
    END
$$;

-- Enqueue one task; returns its id. Runs in the caller's transaction: roll back and the task
-- never existed. Example:
--   SELECT celeriac.enqueue('emails.send', '["a@example.com"]', '{}', queue => 'mail', countdown => 60);
CREATE FUNCTION celeriac.enqueue(
    task_name         text,
    args              jsonb            DEFAULT '[]',
    kwargs            jsonb            DEFAULT '{}',
    queue             text             DEFAULT 'celery',
    priority          integer          DEFAULT 0,
    countdown         double precision DEFAULT NULL,
    eta               timestamptz      DEFAULT NULL,
    expires           timestamptz      DEFAULT NULL,
    expires_in        double precision DEFAULT NULL,
    task_id           uuid             DEFAULT NULL,
    max_retries       integer          DEFAULT NULL,
    retry_delay       double precision DEFAULT NULL,
    retry_backoff     double precision DEFAULT NULL,
    retry_backoff_max double precision DEFAULT NULL,
    retry_jitter      boolean          DEFAULT NULL,
    soft_time_limit   double precision DEFAULT NULL,
    time_limit        double precision DEFAULT NULL,
    ignore_result     boolean          DEFAULT false,
    headers           jsonb            DEFAULT '{}'
) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    new_id   uuid        := coalesce(task_id, gen_random_uuid());
    due      timestamptz := now();
    deadline timestamptz := expires;
    payload  integer;
BEGIN
    IF task_name IS NULL OR task_name = '' THEN
        RAISE EXCEPTION 'celeriac.enqueue: task_name must not be empty' USING ERRCODE = '22023';
    END IF;
    IF queue IS NULL OR queue = '' THEN
        RAISE EXCEPTION 'celeriac.enqueue: queue must not be empty' USING ERRCODE = '22023';
    END IF;
    args := coalesce(args, '[]');
    kwargs := coalesce(kwargs, '{}');
    headers := coalesce(headers, '{}');
    IF jsonb_typeof(args) <> 'array' THEN
        RAISE EXCEPTION 'celeriac.enqueue: args must be a JSON array, got %', jsonb_typeof(args)
            USING ERRCODE = '22023';
    END IF;
    IF jsonb_typeof(kwargs) <> 'object' THEN
        RAISE EXCEPTION 'celeriac.enqueue: kwargs must be a JSON object, got %', jsonb_typeof(kwargs)
            USING ERRCODE = '22023';
    END IF;
    IF jsonb_typeof(headers) <> 'object' THEN
        RAISE EXCEPTION 'celeriac.enqueue: headers must be a JSON object, got %', jsonb_typeof(headers)
            USING ERRCODE = '22023';
    END IF;
    IF priority IS NULL OR priority NOT BETWEEN 0 AND 255 THEN
        RAISE EXCEPTION 'celeriac.enqueue: priority must be between 0 and 255, got %', priority
            USING ERRCODE = '22023';
    END IF;
    IF countdown IS NOT NULL AND eta IS NOT NULL THEN
        RAISE EXCEPTION 'celeriac.enqueue: give countdown or eta, not both' USING ERRCODE = '22023';
    END IF;
    IF expires IS NOT NULL AND expires_in IS NOT NULL THEN
        RAISE EXCEPTION 'celeriac.enqueue: give expires or expires_in, not both' USING ERRCODE = '22023';
    END IF;
    payload := octet_length(args::text) + octet_length(kwargs::text) + octet_length(headers::text);
    IF payload > 1048576 THEN
        RAISE EXCEPTION 'celeriac.enqueue: payload of % bytes exceeds the limit of 1048576 bytes', payload
            USING ERRCODE = '54000', HINT = 'Store large data elsewhere and pass a reference.';
    END IF;
    IF countdown IS NOT NULL THEN
        due := now() + make_interval(secs => countdown);
    ELSIF eta IS NOT NULL THEN
        due := eta;
    END IF;
    IF expires_in IS NOT NULL THEN
        deadline := now() + make_interval(secs => expires_in);
    END IF;

    INSERT INTO celeriac.tasks (
        id, name, queue, state, priority, args, kwargs, headers, run_at, expires_at,
        max_retries, retry_delay, retry_backoff, retry_backoff_max, retry_jitter,
        soft_time_limit, time_limit, ignore_result)
    VALUES (
        new_id, task_name, queue, CASE WHEN due > now() THEN 'SCHEDULED' ELSE 'PENDING' END,
        priority, args, kwargs, headers, due, deadline,
        max_retries, retry_delay, retry_backoff, retry_backoff_max, retry_jitter,
        soft_time_limit, time_limit, coalesce(ignore_result, false));

    -- Delivered at commit, once per queue per transaction (Postgres folds duplicates).
    PERFORM pg_notify('celeriac.wakeup', queue);
    RETURN new_id;
END
$$;

-- Revoke a task. Waiting tasks become REVOKED at once; a running task is cancelled by its
-- worker when terminate is true (and otherwise left to finish, as in Celery). Returns the
-- Celery state after the call, or NULL when no such task exists.
CREATE FUNCTION celeriac.revoke(task_id uuid, terminate boolean DEFAULT false)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    after text;
BEGIN
    UPDATE celeriac.tasks t SET
        state = CASE WHEN t.state IN ('SCHEDULED', 'PENDING', 'RETRY') THEN 'REVOKED' ELSE t.state END,
        revoked_reason = CASE WHEN t.state IN ('SCHEDULED', 'PENDING', 'RETRY') THEN 'revoked'
                              ELSE t.revoked_reason END,
        finished_at = CASE WHEN t.state IN ('SCHEDULED', 'PENDING', 'RETRY') THEN now()
                           ELSE t.finished_at END,
        terminate = t.terminate OR (revoke.terminate AND t.state = 'STARTED')
    WHERE t.id = revoke.task_id
    RETURNING celeriac.celery_state(t.state, t.retries, t.progress_state) INTO after;
    IF after = 'REVOKED' THEN
        PERFORM pg_notify('celeriac.done', task_id::text);
    ELSIF after IS NOT NULL AND terminate THEN
        PERFORM pg_notify('celeriac.control', 'terminate:' || task_id::text);
    END IF;
    RETURN after;
END
$$;

-- ─── views for psql ─────────────────────────────────────────────────────────────────────────────

-- How deep is each queue and how old is its oldest ready task.
CREATE VIEW celeriac.queue_stats AS
WITH ready AS (
    SELECT queue, count(*) AS n, min(run_at) AS oldest
    FROM celeriac.tasks WHERE state = 'PENDING' GROUP BY queue
), waiting AS (
    SELECT queue,
           count(*) FILTER (WHERE run_at <= now()) AS due,
           count(*) FILTER (WHERE run_at > now()) AS later,
           min(run_at) AS oldest
    FROM celeriac.tasks WHERE state IN ('SCHEDULED', 'RETRY') GROUP BY queue
), running AS (
    SELECT queue, count(*) AS n FROM celeriac.tasks WHERE worker_id IS NOT NULL GROUP BY queue
), consumers AS (
    SELECT q AS queue, count(*) AS n
    FROM celeriac.workers, unnest(queues) AS q WHERE expires_at > now() GROUP BY q
), names AS (
    SELECT name AS queue FROM celeriac.queues
    UNION SELECT queue FROM ready UNION SELECT queue FROM waiting
    UNION SELECT queue FROM running UNION SELECT queue FROM consumers
)
SELECT n.queue,
       coalesce(q.paused, false)                                           AS paused,
       coalesce(r.n, 0) + coalesce(w.due, 0)                               AS ready,
       coalesce(w.later, 0)                                                AS scheduled,
       coalesce(x.n, 0)                                                    AS running,
       least(r.oldest, CASE WHEN w.due > 0 THEN w.oldest END)              AS oldest_ready_at,
       extract(epoch FROM now() - least(r.oldest, CASE WHEN w.due > 0 THEN w.oldest END))
                                                                            AS oldest_ready_age_s,
       coalesce(c.n, 0)                                                    AS workers
FROM names n
LEFT JOIN celeriac.queues q ON q.name = n.queue
LEFT JOIN ready r ON r.queue = n.queue
LEFT JOIN waiting w ON w.queue = n.queue
LEFT JOIN running x ON x.queue = n.queue
LEFT JOIN consumers c ON c.queue = n.queue;

-- Every task with its Celery state, newest first when ordered by created_at.
CREATE VIEW celeriac.task_states AS
SELECT id, name, queue, celeriac.celery_state(state, retries, progress_state) AS celery_state,
       state, priority, args, kwargs, retries, attempt, created_at, run_at, started_at,
       finished_at, result, error, progress, revoked_reason, worker_id
FROM celeriac.tasks;
