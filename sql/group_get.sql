-- group_get: a group's or chord's state and results as one object (celeriac.group_result).
-- $1 group id uuid
-- Returns: group jsonb (NULL: no such group).
SELECT celeriac.group_result($1) AS "group"
