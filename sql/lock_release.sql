-- lock_release: release named lock $1 held with token $2 (false: that tenure is over).
-- $1 name text  $2 token int8
-- Returns: released bool.
SELECT celeriac.lock_release($1, $2) AS released
