-- notify: send one notification (delivered at commit of the surrounding transaction).
-- $1 channel text   $2 payload text
SELECT pg_notify($1, $2)
