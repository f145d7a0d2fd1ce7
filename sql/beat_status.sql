-- beat_status: the leader, its last tick and its recent fire lag (view celeriac.beat_status).
-- Returns: one row.
SELECT leader_id, leader_alive, leader_token, leader_since, leader_hostname, leader_pid,
       last_tick_at, tick_age_s, schedules, bad_rows, next_fire_at, instances, fires_5m,
       lag_p50_s, lag_p99_s, lag_max_s
FROM celeriac.beat_status
