-- Lock attempts that fail leave no row lock behind.
-- (`celeriac.` means our schema; see V1.)
--
-- In READ COMMITTED, an UPDATE that meets a row updated concurrently waits for that transaction,
-- then locks the row's newest version before it re-checks its WHERE clause, and keeps that lock
-- until its transaction ends even when the re-check fails. celeriac.lock_acquire loops inside one
-- transaction for up to `wait` seconds, so a waiter that lost such a race held the lock row until
-- its deadline: the holder's release (and every other waiter) waited behind it, and a free lock
-- went untaken for the rest of the wait. The same happened to anyone calling lock_try, or a
-- lock_extend/lock_release that finds its tenure over, inside a longer transaction of their own.
--
-- Each attempt now runs in a subtransaction that is rolled back when it takes nothing, which
-- releases whatever row lock it picked up on the way.

CREATE OR REPLACE FUNCTION celeriac.lock_try(lock_name text, ttl double precision, holder text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    t bigint;
BEGIN
    IF ttl IS NULL OR ttl <= 0 THEN
        RAISE EXCEPTION 'lock ttl must be a positive number of seconds, got %', ttl USING ERRCODE = '22023';
    END IF;
    BEGIN
        UPDATE celeriac.locks l
        SET token = l.token + 1, holder = lock_try.holder, acquired_at = clock_timestamp(),
            expires_at = clock_timestamp() + make_interval(secs => ttl)
        WHERE l.name = lock_name AND (l.expires_at IS NULL OR l.expires_at <= clock_timestamp())
        RETURNING l.token INTO t;
        IF NOT FOUND THEN
            INSERT INTO celeriac.locks (name, token, holder, acquired_at, expires_at)
            VALUES (lock_name, 1, lock_try.holder, clock_timestamp(), clock_timestamp() + make_interval(secs => ttl))
            ON CONFLICT (name) DO NOTHING
            RETURNING token INTO t;
        END IF;
        IF t IS NULL THEN
            -- Taken: roll this attempt back (and with it any row lock it holds).
            RAISE SQLSTATE 'CLK01';
        END IF;
    EXCEPTION WHEN SQLSTATE 'CLK01' THEN
        RETURN NULL;
    END;
    RETURN t;
END
$$;

CREATE OR REPLACE FUNCTION celeriac.lock_release(lock_name text, token bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        UPDATE celeriac.locks l SET expires_at = NULL, holder = NULL
        WHERE l.name = lock_name AND l.token = lock_release.token AND l.expires_at > clock_timestamp();
        IF NOT FOUND THEN
            RAISE SQLSTATE 'CLK01';
        END IF;
    EXCEPTION WHEN SQLSTATE 'CLK01' THEN
        RETURN false;
    END;
    PERFORM pg_notify('celeriac.locks', lock_name);
    RETURN true;
END
$$;

CREATE OR REPLACE FUNCTION celeriac.lock_extend(lock_name text, token bigint, ttl double precision) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF ttl IS NULL OR ttl <= 0 THEN
        RAISE EXCEPTION 'lock ttl must be a positive number of seconds, got %', ttl USING ERRCODE = '22023';
    END IF;
    BEGIN
        UPDATE celeriac.locks l SET expires_at = clock_timestamp() + make_interval(secs => ttl)
        WHERE l.name = lock_name AND l.token = lock_extend.token AND l.expires_at > clock_timestamp();
        IF NOT FOUND THEN
            RAISE SQLSTATE 'CLK01';
        END IF;
    EXCEPTION WHEN SQLSTATE 'CLK01' THEN
        RETURN false;
    END;
    RETURN true;
END
$$;
