-- task_exists: whether a task with id $1 exists.
-- $1 id uuid
-- Returns: exists bool.
SELECT EXISTS (SELECT 1 FROM celeriac.tasks WHERE id = $1)
