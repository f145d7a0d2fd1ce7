-- limit_reconcile: recount running slots and make ready throttled tasks whose bucket has room
-- (celeriac.limit_reconcile); a safety net run by the maintenance leader.
-- Returns: released int4.
SELECT celeriac.limit_reconcile() AS released
