-- lease_release: give the named lease up at once (only if we hold it), so a successor does not
-- wait for it to expire.
-- $1 name text   $2 holder uuid
UPDATE celeriac.leases SET expires_at = now() WHERE name = $1 AND holder = $2
