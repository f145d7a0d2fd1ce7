-- Workflows (chain / group / chord), unique tasks and named locks.
-- (`celeriac.` means our schema; see V1.)

-- ─── task columns ───────────────────────────────────────────────────────────────────────────────
ALTER TABLE celeriac.tasks
    -- What happens when this task finishes: {"cont": continuation, "link": [...], "link_error": [...]}.
    -- NULL for plain tasks (the workflow trigger ignores them).
    ADD COLUMN workflow     jsonb,
    ADD COLUMN parent_id    uuid,
    ADD COLUMN root_id      uuid,
    -- A second enqueue with the same key returns the existing task while it is live.
    ADD COLUMN unique_key   text,
    ADD COLUMN unique_scope text;

ALTER TABLE celeriac.tasks
    ADD CONSTRAINT tasks_unique_scope_valid CHECK (unique_scope IN ('queued', 'active', 'window')),
    ADD CONSTRAINT tasks_unique_key_and_scope CHECK ((unique_key IS NULL) = (unique_scope IS NULL));

-- 'queued': unique while waiting; 'active': while waiting or running. Enforced by the index, so
-- concurrent enqueues cannot both insert. Rows without a key are not in it (and cost nothing).
CREATE UNIQUE INDEX tasks_unique_live ON celeriac.tasks (unique_key)
    WHERE unique_scope IN ('queued', 'active')
      AND (state IN ('SCHEDULED', 'PENDING', 'THROTTLED', 'RETRY')
           OR (state = 'STARTED' AND unique_scope = 'active'));
-- 'window': the stored key carries its time bucket (key@n, n = epoch / window), unique for good.
CREATE UNIQUE INDEX tasks_unique_window ON celeriac.tasks (unique_key)
    WHERE unique_scope = 'window';

-- ─── groups (and chords) ────────────────────────────────────────────────────────────────────────
-- One row per group or chord header. `remaining` counts members that have not reported; the
-- member that brings it to 0 (under this row's lock) continues the workflow: exactly once.
CREATE TABLE celeriac.groups (
    id          uuid        PRIMARY KEY,
    kind        text        NOT NULL CHECK (kind IN ('group', 'chord')),
    size        integer     NOT NULL CHECK (size >= 0),
    remaining   integer     NOT NULL,
    state       text        NOT NULL DEFAULT 'PENDING' CHECK (state IN ('PENDING', 'SUCCESS', 'FAILURE')),
    -- What to do with the list of results (a chord's body, the rest of a chain, a parent group).
    cont        jsonb,
    error       jsonb,
    root_id     uuid,
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX groups_finished ON celeriac.groups (finished_at) WHERE finished_at IS NOT NULL;

-- One row per member that reported; the primary key makes a report idempotent.
CREATE TABLE celeriac.group_members (
    group_id    uuid        NOT NULL REFERENCES celeriac.groups (id) ON DELETE CASCADE,
    idx         integer     NOT NULL,
    -- The task whose outcome is this member's (the last task of a member chain).
    task_id     uuid        NOT NULL,
    state       text        NOT NULL CHECK (state IN ('SUCCESS', 'FAILURE')),
    result      jsonb,
    error       jsonb,
    finished_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, idx)
);

-- ─── canvas functions ───────────────────────────────────────────────────────────────────────────
-- A canvas is JSON:
--   {"task": "name", "args": [...], "kwargs": {...}, "options": {...}, "immutable": false,
--    "link": [canvas...], "link_error": [canvas...], "id": "uuid"?}
--   {"chain": [canvas...]}        each result is prepended to the next one's args
--   {"group": [canvas...]}        result: the members' results, in order
--   {"chord": {"header": [canvas...], "body": canvas}}
-- options: queue, priority, countdown, eta, expires, expires_in, max_retries, retry_delay,
-- retry_backoff, retry_backoff_max, retry_jitter, soft_time_limit, time_limit, ignore_result,
-- headers. A `link_error` on a chain, group or chord applies to every task in it.
-- A continuation (what happens with a node's result) is
--   {"apply": canvas, "then": continuation}   run the canvas with the result as input
--   {"group": id, "index": i}                 report to a group
--   null                                      nothing

CREATE FUNCTION celeriac.canvas_kind(node jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF jsonb_typeof(node) <> 'object' THEN
        RAISE EXCEPTION 'canvas: a node must be a JSON object, got %', coalesce(jsonb_typeof(node), 'null')
            USING ERRCODE = '22023';
    END IF;
    IF node ? 'task' THEN RETURN 'task'; END IF;
    IF node ? 'chain' THEN RETURN 'chain'; END IF;
    IF node ? 'group' THEN RETURN 'group'; END IF;
    IF node ? 'chord' THEN RETURN 'chord'; END IF;
    RAISE EXCEPTION 'canvas: a node needs one of "task", "chain", "group", "chord": %', left(node::text, 200)
        USING ERRCODE = '22023';
END
$$;

-- Give every task and group an id (keeping ids already given), push canvas-level link_error
-- callbacks down to the tasks, and check shapes, so result ids are known before anything runs.
CREATE FUNCTION celeriac.canvas_freeze(node jsonb, errbacks jsonb DEFAULT '[]') RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    kind  text := celeriac.canvas_kind(node);
    items jsonb := '[]';
    x     jsonb;
    eb    jsonb := errbacks || coalesce(CASE WHEN kind <> 'task' THEN node->'link_error' END, '[]');
BEGIN
    IF jsonb_typeof(eb) <> 'array' THEN
        RAISE EXCEPTION 'canvas: link_error must be a list' USING ERRCODE = '22023';
    END IF;
    IF kind = 'task' THEN
        IF jsonb_typeof(node->'task') <> 'string' OR node->>'task' = '' THEN
            RAISE EXCEPTION 'canvas: "task" must be a non-empty task name' USING ERRCODE = '22023';
        END IF;
        IF node ? 'args' AND jsonb_typeof(node->'args') <> 'array' THEN
            RAISE EXCEPTION 'canvas: args of % must be a JSON array', node->>'task' USING ERRCODE = '22023';
        END IF;
        IF node ? 'kwargs' AND jsonb_typeof(node->'kwargs') <> 'object' THEN
            RAISE EXCEPTION 'canvas: kwargs of % must be a JSON object', node->>'task' USING ERRCODE = '22023';
        END IF;
        IF node ? 'options' AND jsonb_typeof(node->'options') <> 'object' THEN
            RAISE EXCEPTION 'canvas: options of % must be a JSON object', node->>'task' USING ERRCODE = '22023';
        END IF;
        IF node ? 'link' AND jsonb_typeof(node->'link') <> 'array' THEN
            RAISE EXCEPTION 'canvas: link of % must be a list', node->>'task' USING ERRCODE = '22023';
        END IF;
        IF node ? 'link_error' AND jsonb_typeof(node->'link_error') <> 'array' THEN
            RAISE EXCEPTION 'canvas: link_error of % must be a list', node->>'task' USING ERRCODE = '22023';
        END IF;
        RETURN node
            || jsonb_build_object('id', coalesce(node->>'id', gen_random_uuid()::text))
            || CASE WHEN jsonb_array_length(eb) > 0
                    THEN jsonb_build_object('link_error', coalesce(node->'link_error', '[]') || eb)
                    ELSE '{}' END;
    ELSIF kind = 'chain' THEN
        IF jsonb_typeof(node->'chain') <> 'array' OR jsonb_array_length(node->'chain') = 0 THEN
            RAISE EXCEPTION 'canvas: "chain" must be a non-empty list' USING ERRCODE = '22023';
        END IF;
        FOR x IN SELECT value FROM jsonb_array_elements(node->'chain') LOOP
            items := items || jsonb_build_array(celeriac.canvas_freeze(x, eb));
        END LOOP;
        RETURN jsonb_build_object('chain', items);
    ELSIF kind = 'group' THEN
        IF jsonb_typeof(node->'group') <> 'array' THEN
            RAISE EXCEPTION 'canvas: "group" must be a list' USING ERRCODE = '22023';
        END IF;
        FOR x IN SELECT value FROM jsonb_array_elements(node->'group') LOOP
            items := items || jsonb_build_array(celeriac.canvas_freeze(x, eb));
        END LOOP;
        RETURN jsonb_build_object('group', items, 'id', coalesce(node->>'id', gen_random_uuid()::text));
    ELSE
        IF jsonb_typeof(node->'chord') <> 'object' OR jsonb_typeof(node->'chord'->'header') <> 'array'
           OR NOT (node->'chord' ? 'body') THEN
            RAISE EXCEPTION 'canvas: "chord" must be {"header": [...], "body": canvas}' USING ERRCODE = '22023';
        END IF;
        FOR x IN SELECT value FROM jsonb_array_elements(node->'chord'->'header') LOOP
            items := items || jsonb_build_array(celeriac.canvas_freeze(x, eb));
        END LOOP;
        RETURN jsonb_build_object(
            'chord', jsonb_build_object('header', items, 'body', celeriac.canvas_freeze(node->'chord'->'body', eb)),
            'id', coalesce(node->>'id', gen_random_uuid()::text));
    END IF;
END
$$;

-- The id whose result is the node's result: a task's id, a chain's last node's, a group's own id,
-- a chord's body's.
CREATE FUNCTION celeriac.canvas_result_id(node jsonb) RETURNS uuid
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    CASE celeriac.canvas_kind(node)
        WHEN 'task' THEN RETURN (node->>'id')::uuid;
        WHEN 'chain' THEN RETURN celeriac.canvas_result_id(node->'chain'->-1);
        WHEN 'group' THEN RETURN (node->>'id')::uuid;
        ELSE RETURN celeriac.canvas_result_id(node->'chord'->'body');
    END CASE;
END
$$;

-- The first task to run (the workflow's root id, as Celery's root_id).
CREATE FUNCTION celeriac.canvas_first_id(node jsonb) RETURNS uuid
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    CASE celeriac.canvas_kind(node)
        WHEN 'task' THEN RETURN (node->>'id')::uuid;
        WHEN 'chain' THEN RETURN celeriac.canvas_first_id(node->'chain'->0);
        WHEN 'group' THEN
            RETURN CASE WHEN jsonb_array_length(node->'group') = 0 THEN (node->>'id')::uuid
                        ELSE celeriac.canvas_first_id(node->'group'->0) END;
        ELSE
            RETURN CASE WHEN jsonb_array_length(node->'chord'->'header') = 0
                        THEN celeriac.canvas_first_id(node->'chord'->'body')
                        ELSE celeriac.canvas_first_id(node->'chord'->'header'->0) END;
    END CASE;
END
$$;

-- Insert the task of a frozen task node, with `args` already decided.
CREATE FUNCTION celeriac.canvas_insert_task(sig jsonb, args jsonb, wf jsonb, parent uuid, root uuid)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    o   jsonb := coalesce(sig->'options', '{}');
    q   text := coalesce(o->>'queue', 'celery');
    due timestamptz := coalesce((o->>'eta')::timestamptz,
                                now() + make_interval(secs => (o->>'countdown')::float8),
                                now());
BEGIN
    INSERT INTO celeriac.tasks (
        id, name, queue, state, priority, args, kwargs, headers, run_at, expires_at,
        max_retries, retry_delay, retry_backoff, retry_backoff_max, retry_jitter,
        soft_time_limit, time_limit, ignore_result, workflow, parent_id, root_id)
    VALUES (
        (sig->>'id')::uuid, sig->>'task', q, CASE WHEN due > now() THEN 'SCHEDULED' ELSE 'PENDING' END,
        coalesce((o->>'priority')::int, 0), args, coalesce(sig->'kwargs', '{}'),
        coalesce(o->'headers', '{}'), due,
        coalesce((o->>'expires')::timestamptz, now() + make_interval(secs => (o->>'expires_in')::float8)),
        (o->>'max_retries')::int, (o->>'retry_delay')::float8, (o->>'retry_backoff')::float8,
        (o->>'retry_backoff_max')::float8, (o->>'retry_jitter')::boolean,
        (o->>'soft_time_limit')::float8, (o->>'time_limit')::float8,
        coalesce((o->>'ignore_result')::boolean, false), wf, parent, root);
    PERFORM pg_notify('celeriac.wakeup', q);
END
$$;

-- Run a frozen node with `input` (a previous result, or NULL), then `cont` with its result.
CREATE FUNCTION celeriac.canvas_run(node jsonb, input jsonb, cont jsonb, parent uuid, root uuid)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    kind text := celeriac.canvas_kind(node);
    args jsonb;
    wf   jsonb;
    n    integer;
    i    integer;
    gid  uuid;
BEGIN
    IF kind = 'task' THEN
        args := coalesce(node->'args', '[]');
        IF input IS NOT NULL AND NOT coalesce((node->>'immutable')::boolean, false) THEN
            args := jsonb_build_array(input) || args;
        END IF;
        wf := jsonb_strip_nulls(jsonb_build_object(
            'cont', cont,
            'link', CASE WHEN jsonb_array_length(coalesce(node->'link', '[]')) > 0 THEN node->'link' END,
            'link_error', CASE WHEN jsonb_array_length(coalesce(node->'link_error', '[]')) > 0 THEN node->'link_error' END));
        PERFORM celeriac.canvas_insert_task(node, args, CASE WHEN wf = '{}' THEN NULL ELSE wf END, parent, root);
    ELSIF kind = 'chain' THEN
        n := jsonb_array_length(node->'chain');
        IF n = 1 THEN
            PERFORM celeriac.canvas_run(node->'chain'->0, input, cont, parent, root);
        ELSE
            PERFORM celeriac.canvas_run(node->'chain'->0, input,
                jsonb_build_object('apply', jsonb_build_object('chain', (node->'chain') - 0), 'then', cont),
                parent, root);
        END IF;
    ELSIF kind = 'group' THEN
        gid := (node->>'id')::uuid;
        n := jsonb_array_length(node->'group');
        INSERT INTO celeriac.groups (id, kind, size, remaining, cont, root_id)
        VALUES (gid, coalesce(node->>'kind', 'group'), n, n, cont, root);
        IF n = 0 THEN
            UPDATE celeriac.groups SET state = 'SUCCESS', finished_at = now() WHERE id = gid;
            PERFORM pg_notify('celeriac.done', gid::text);
            PERFORM celeriac.workflow_continue(cont, '[]', parent, root);
        END IF;
        FOR i IN 0 .. n - 1 LOOP
            PERFORM celeriac.canvas_run(node->'group'->i, input,
                jsonb_build_object('group', gid, 'index', i), parent, root);
        END LOOP;
    ELSE
        -- A chord is its header as a group whose continuation is the body.
        PERFORM celeriac.canvas_run(
            jsonb_build_object('group', node->'chord'->'header', 'id', node->'id', 'kind', 'chord'),
            input, jsonb_build_object('apply', node->'chord'->'body', 'then', cont), parent, root);
    END IF;
END
$$;

-- A node's result is known: continue.
CREATE FUNCTION celeriac.workflow_continue(cont jsonb, result jsonb, from_id uuid, root uuid)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF cont IS NULL OR jsonb_typeof(cont) <> 'object' THEN
        RETURN;
    END IF;
    IF cont ? 'apply' THEN
        PERFORM celeriac.canvas_run(cont->'apply', coalesce(result, 'null'), cont->'then', from_id, root);
    ELSIF cont ? 'group' THEN
        PERFORM celeriac.group_report((cont->>'group')::uuid, (cont->>'index')::int, from_id,
                                      'SUCCESS', result, NULL);
    END IF;
END
$$;

-- A node failed with `err`: what would have run after it fails too, with the same error.
CREATE FUNCTION celeriac.workflow_fail(cont jsonb, err jsonb, from_id uuid, root uuid)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF cont IS NULL OR jsonb_typeof(cont) <> 'object' THEN
        RETURN;
    END IF;
    IF cont ? 'apply' THEN
        PERFORM celeriac.canvas_fail_unrun(cont->'apply', err, from_id, root);
        PERFORM celeriac.workflow_fail(cont->'then', err, from_id, root);
    ELSIF cont ? 'group' THEN
        PERFORM celeriac.group_report((cont->>'group')::uuid, (cont->>'index')::int, from_id,
                                      'FAILURE', NULL, err);
    END IF;
END
$$;

-- A frozen node that will never run: its tasks and groups are recorded as FAILURE with the error
-- that stopped them, so every result id of the workflow resolves.
CREATE FUNCTION celeriac.canvas_fail_unrun(node jsonb, err jsonb, parent uuid, root uuid)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    x jsonb;
    o jsonb;
BEGIN
    CASE celeriac.canvas_kind(node)
    WHEN 'task' THEN
        o := coalesce(node->'options', '{}');
        INSERT INTO celeriac.tasks (id, name, queue, state, args, kwargs, finished_at, error,
                                    parent_id, root_id)
        VALUES ((node->>'id')::uuid, node->>'task', coalesce(o->>'queue', 'celery'), 'FAILURE',
                coalesce(node->'args', '[]'), coalesce(node->'kwargs', '{}'), now(), err, parent, root)
        ON CONFLICT (id) DO NOTHING;
        PERFORM pg_notify('celeriac.done', node->>'id');
    WHEN 'chain' THEN
        FOR x IN SELECT value FROM jsonb_array_elements(node->'chain') LOOP
            PERFORM celeriac.canvas_fail_unrun(x, err, parent, root);
        END LOOP;
    WHEN 'group' THEN
        INSERT INTO celeriac.groups (id, kind, size, remaining, state, error, root_id, finished_at)
        VALUES ((node->>'id')::uuid, coalesce(node->>'kind', 'group'), jsonb_array_length(node->'group'),
                jsonb_array_length(node->'group'), 'FAILURE', err, root, now())
        ON CONFLICT (id) DO NOTHING;
        PERFORM pg_notify('celeriac.done', node->>'id');
        FOR x IN SELECT value FROM jsonb_array_elements(node->'group') LOOP
            PERFORM celeriac.canvas_fail_unrun(x, err, parent, root);
        END LOOP;
    ELSE
        PERFORM celeriac.canvas_fail_unrun(
            jsonb_build_object('group', node->'chord'->'header', 'id', node->'id', 'kind', 'chord'),
            err, parent, root);
        PERFORM celeriac.canvas_fail_unrun(node->'chord'->'body', err, parent, root);
    END CASE;
END
$$;

-- A group member is done. The first report per index counts; the group's row lock orders
-- concurrent reports, so exactly one report sees the group complete (or fail) and continues.
CREATE FUNCTION celeriac.group_report(gid uuid, member integer, task uuid, outcome text,
                                      result jsonb, err jsonb)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    g       celeriac.groups%ROWTYPE;
    results jsonb;
BEGIN
    INSERT INTO celeriac.group_members (group_id, idx, task_id, state, result, error)
    VALUES (gid, member, task, outcome, result, err)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE celeriac.groups SET remaining = remaining - 1 WHERE id = gid RETURNING * INTO g;
    IF NOT FOUND OR g.state <> 'PENDING' THEN
        RETURN;
    END IF;
    IF outcome = 'FAILURE' THEN
        UPDATE celeriac.groups SET state = 'FAILURE', error = err, finished_at = now() WHERE id = gid;
        PERFORM pg_notify('celeriac.done', gid::text);
        PERFORM celeriac.workflow_fail(g.cont, err, task, g.root_id);
    ELSIF g.remaining = 0 THEN
        SELECT jsonb_agg(m.result ORDER BY m.idx) INTO results
        FROM celeriac.group_members m WHERE m.group_id = gid;
        UPDATE celeriac.groups SET state = 'SUCCESS', finished_at = now() WHERE id = gid;
        PERFORM pg_notify('celeriac.done', gid::text);
        PERFORM celeriac.workflow_continue(g.cont, coalesce(results, '[]'), task, g.root_id);
    END IF;
END
$$;

-- Runs in the transaction that finishes a workflow task, whoever finishes it (a worker's
-- completion, a rescue, a revoke, an expiry): callbacks, the next chain link, group counters.
CREATE FUNCTION celeriac.workflow_on_finish() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    wf   jsonb := NEW.workflow;
    root uuid := coalesce(NEW.root_id, NEW.id);
    sig  jsonb;
    err  jsonb;
BEGIN
    IF NEW.state = 'SUCCESS' THEN
        FOR sig IN SELECT value FROM jsonb_array_elements(coalesce(wf->'link', '[]')) LOOP
            PERFORM celeriac.canvas_run(celeriac.canvas_freeze(sig), coalesce(NEW.result, 'null'), NULL, NEW.id, root);
        END LOOP;
        PERFORM celeriac.workflow_continue(wf->'cont', NEW.result, NEW.id, root);
    ELSE
        err := jsonb_build_object(
            'type', coalesce(NEW.error->>'type', CASE WHEN NEW.state = 'REVOKED' THEN 'TaskRevokedError' ELSE 'TaskFailure' END),
            'message', coalesce(NEW.error->>'message', 'task ' || NEW.id || ' ' || lower(NEW.state)
                                || coalesce(' (' || NEW.revoked_reason || ')', '')),
            'traceback', 'workflow member ' || NEW.id || ' (' || NEW.name || ') ended ' || NEW.state,
            'cause', NEW.id);
        -- Error callbacks get the failed task's id as their first argument.
        FOR sig IN SELECT value FROM jsonb_array_elements(coalesce(wf->'link_error', '[]')) LOOP
            PERFORM celeriac.canvas_run(celeriac.canvas_freeze(sig), to_jsonb(NEW.id::text), NULL, NEW.id, root);
        END LOOP;
        PERFORM celeriac.workflow_fail(wf->'cont', err, NEW.id, root);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_workflow_finished
    AFTER UPDATE OF state ON celeriac.tasks
    FOR EACH ROW
    WHEN (NEW.workflow IS NOT NULL
          AND NEW.state IN ('SUCCESS', 'FAILURE', 'REVOKED')
          AND OLD.state NOT IN ('SUCCESS', 'FAILURE', 'REVOKED'))
    EXECUTE FUNCTION celeriac.workflow_on_finish();

-- SQL API: apply a canvas; returns {"id": result id, "root_id": ..., "canvas": frozen canvas}.
--   SELECT celeriac.apply('{"chain": [{"task": "add", "args": [1, 2]}, {"task": "double"}]}');
CREATE FUNCTION celeriac.apply(canvas jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    frozen jsonb := celeriac.canvas_freeze(canvas);
    root   uuid := celeriac.canvas_first_id(frozen);
BEGIN
    PERFORM celeriac.canvas_run(frozen, NULL, NULL, NULL, root);
    RETURN jsonb_build_object('id', celeriac.canvas_result_id(frozen), 'root_id', root, 'canvas', frozen);
END
$$;

-- A group's or chord's results as one object: state, size, completed, results (in order; null
-- for members still running), error.
CREATE FUNCTION celeriac.group_result(group_id uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', g.id, 'kind', g.kind, 'state', g.state, 'size', g.size,
        'completed', (SELECT count(*) FROM celeriac.group_members m WHERE m.group_id = g.id),
        'failed', (SELECT count(*) FROM celeriac.group_members m WHERE m.group_id = g.id AND m.state = 'FAILURE'),
        'results', coalesce((SELECT jsonb_agg(m.result ORDER BY i)
                             FROM generate_series(0, g.size - 1) AS i
                             LEFT JOIN celeriac.group_members m ON m.group_id = g.id AND m.idx = i), '[]'),
        'error', g.error, 'created_at', g.created_at, 'finished_at', g.finished_at)
    FROM celeriac.groups g
    WHERE g.id = group_result.group_id
$$;

-- ─── named locks ────────────────────────────────────────────────────────────────────────────────
-- A lease: held until released or until expires_at. `token` grows on every acquisition (fencing:
-- pass it to what the lock protects, and refuse writes carrying an older token). Lock times use
-- clock_timestamp(), not the transaction's start time, so long transactions see expiry.
CREATE TABLE celeriac.locks (
    name        text        PRIMARY KEY,
    token       bigint      NOT NULL,
    holder      text,
    acquired_at timestamptz NOT NULL,
    -- NULL once released.
    expires_at  timestamptz
);

-- Take the lock if it is free or expired; returns the new token, or NULL when someone holds it.
-- Never locks a row it does not take, so a waiting caller cannot block the holder's release.
CREATE FUNCTION celeriac.lock_try(lock_name text, ttl double precision, holder text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    t bigint;
BEGIN
    IF ttl IS NULL OR ttl <= 0 THEN
        RAISE EXCEPTION 'lock ttl must be a positive number of seconds, got %', ttl USING ERRCODE = '22023';
    END IF;
    UPDATE celeriac.locks l
    SET token = l.token + 1, holder = lock_try.holder, acquired_at = clock_timestamp(),
        expires_at = clock_timestamp() + make_interval(secs => ttl)
    WHERE l.name = lock_name AND (l.expires_at IS NULL OR l.expires_at <= clock_timestamp())
    RETURNING l.token INTO t;
    IF FOUND THEN
        RETURN t;
    END IF;
    INSERT INTO celeriac.locks (name, token, holder, acquired_at, expires_at)
    VALUES (lock_name, 1, lock_try.holder, clock_timestamp(), clock_timestamp() + make_interval(secs => ttl))
    ON CONFLICT (name) DO NOTHING
    RETURNING token INTO t;
    RETURN t;
END
$$;

-- Take the lock, waiting up to `wait` seconds (polling every 50 ms: the Rust and Python clients
-- wait on a notification instead). Returns the token, or NULL on timeout.
--   SELECT celeriac.lock_acquire('reports:42', ttl => 60, wait => 10);
CREATE FUNCTION celeriac.lock_acquire(lock_name text, ttl double precision,
                                      wait double precision DEFAULT 0, holder text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + make_interval(secs => greatest(coalesce(wait, 0), 0));
    t        bigint;
BEGIN
    LOOP
        t := celeriac.lock_try(lock_name, ttl, holder);
        IF t IS NOT NULL OR clock_timestamp() >= deadline THEN
            RETURN t;
        END IF;
        PERFORM pg_sleep(least(0.05, greatest(extract(epoch FROM deadline - clock_timestamp()), 0)));
    END LOOP;
END
$$;

-- Release a lock held with `token`. False when that tenure is over (expired, or taken since):
-- an expired holder cannot release a lock it lost.
CREATE FUNCTION celeriac.lock_release(lock_name text, token bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE celeriac.locks l SET expires_at = NULL, holder = NULL
    WHERE l.name = lock_name AND l.token = lock_release.token AND l.expires_at > clock_timestamp();
    IF FOUND THEN
        PERFORM pg_notify('celeriac.locks', lock_name);
        RETURN true;
    END IF;
    RETURN false;
END
$$;

-- Extend a held lock to `ttl` seconds from now. False when that tenure is over.
CREATE FUNCTION celeriac.lock_extend(lock_name text, token bigint, ttl double precision) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF ttl IS NULL OR ttl <= 0 THEN
        RAISE EXCEPTION 'lock ttl must be a positive number of seconds, got %', ttl USING ERRCODE = '22023';
    END IF;
    UPDATE celeriac.locks l SET expires_at = clock_timestamp() + make_interval(secs => ttl)
    WHERE l.name = lock_name AND l.token = lock_extend.token AND l.expires_at > clock_timestamp();
    RETURN FOUND;
END
$$;

-- ─── the SQL enqueue, now with unique tasks ─────────────────────────────────────────────────────
DROP FUNCTION celeriac.enqueue(text, jsonb, jsonb, text, integer, double precision, timestamptz,
    timestamptz, double precision, uuid, integer, double precision, double precision,
    double precision, boolean, double precision, double precision, boolean, jsonb);

-- Enqueue one task; returns its id. With unique_key, returns the id of the live task with that
-- key instead of adding one (scope 'queued': while it waits; 'active': while it waits or runs;
-- 'window': one per key per unique_window seconds, windows aligned on the epoch).
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
    headers           jsonb            DEFAULT '{}',
    unique_key        text             DEFAULT NULL,
    unique_scope      text             DEFAULT 'queued',
    unique_window     double precision DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    new_id   uuid        := coalesce(task_id, gen_random_uuid());
    due      timestamptz := now();
    deadline timestamptz := expires;
    payload  integer;
    ukey     text;
    uscope   text;
    found_id uuid;
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
    IF unique_key IS NOT NULL THEN
        uscope := coalesce(unique_scope, 'queued');
        IF uscope NOT IN ('queued', 'active', 'window') THEN
            RAISE EXCEPTION 'celeriac.enqueue: unique_scope must be queued, active or window, got %', uscope
                USING ERRCODE = '22023';
        END IF;
        IF uscope = 'window' AND (unique_window IS NULL OR unique_window <= 0) THEN
            RAISE EXCEPTION 'celeriac.enqueue: unique_scope window needs unique_window > 0 seconds'
                USING ERRCODE = '22023';
        END IF;
        ukey := CASE WHEN uscope = 'window'
                     THEN unique_key || '@' || floor(extract(epoch FROM now()) / unique_window)::bigint
                     ELSE unique_key END;
    END IF;
    IF countdown IS NOT NULL THEN
        due := now() + make_interval(secs => countdown);
    ELSIF eta IS NOT NULL THEN
        due := eta;
    END IF;
    IF expires_in IS NOT NULL THEN
        deadline := now() + make_interval(secs => expires_in);
    END IF;

    LOOP
        INSERT INTO celeriac.tasks (
            id, name, queue, state, priority, args, kwargs, headers, run_at, expires_at,
            max_retries, retry_delay, retry_backoff, retry_backoff_max, retry_jitter,
            soft_time_limit, time_limit, ignore_result, unique_key, unique_scope)
        VALUES (
            new_id, task_name, queue, CASE WHEN due > now() THEN 'SCHEDULED' ELSE 'PENDING' END,
            priority, args, kwargs, headers, due, deadline,
            max_retries, retry_delay, retry_backoff, retry_backoff_max, retry_jitter,
            soft_time_limit, time_limit, coalesce(ignore_result, false), ukey, uscope)
        ON CONFLICT DO NOTHING;
        IF FOUND THEN
            -- Delivered at commit, once per queue per transaction (Postgres folds duplicates).
            PERFORM pg_notify('celeriac.wakeup', queue);
            RETURN new_id;
        END IF;
        IF ukey IS NULL THEN
            RAISE EXCEPTION 'celeriac.enqueue: a task with id % already exists', new_id
                USING ERRCODE = '23505';
        END IF;
        -- The key is taken: the live task with it is the answer (read with a fresh snapshot).
        SELECT t.id INTO found_id FROM celeriac.tasks t
        WHERE t.unique_key = ukey
          AND ((t.unique_scope IN ('queued', 'active')
                AND (t.state IN ('SCHEDULED', 'PENDING', 'THROTTLED', 'RETRY')
                     OR (t.state = 'STARTED' AND t.unique_scope = 'active')))
               OR t.unique_scope = 'window')
        LIMIT 1;
        IF found_id IS NOT NULL THEN
            RETURN found_id;
        END IF;
        IF EXISTS (SELECT 1 FROM celeriac.tasks t WHERE t.id = new_id) THEN
            RAISE EXCEPTION 'celeriac.enqueue: a task with id % already exists', new_id
                USING ERRCODE = '23505';
        END IF;
        -- The holder finished between our insert and our look: try again.
    END LOOP;
END
$$;

-- Group rows are pruned with their tasks (see sql/group_prune_finished.sql).
