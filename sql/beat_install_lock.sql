-- beat_install_lock: serialise concurrent installs of the django tables and triggers (a second
-- `celeriac migrate` waits, then finds everything in place). Transaction-scoped.
-- $1 key text (the django schema)
SELECT pg_advisory_xact_lock(hashtext('beat tables ' || $1))
