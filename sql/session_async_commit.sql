-- session_async_commit: the claim connection commits without waiting for the WAL flush. A claim
-- lost in a server crash only makes its task claimable again (the running attempt's outcome is
-- then refused by the attempt fence and the task runs once more).
SET synchronous_commit = off
