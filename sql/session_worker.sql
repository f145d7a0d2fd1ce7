-- session_worker: settings of a worker's own connections, run once per connection.
-- Its statements are few and shaped to be planned well without knowing their parameters;
-- re-planning them on every call (custom plans) costs ~1 ms each and lets stale statistics of
-- the churning task table choose bad joins.
SET plan_cache_mode = force_generic_plan
