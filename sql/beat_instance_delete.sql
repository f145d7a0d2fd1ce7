-- beat_instance_delete: forget a stopped beat, and beats not seen for an hour.
-- $1 id uuid
DELETE FROM celeriac.beat_instances WHERE id = $1 OR seen_at < now() - interval '1 hour'
