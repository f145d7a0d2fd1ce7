-- beat_writer_mark: mark the current transaction as beat's own write-back, so the change
-- triggers (celeriac.beat_changed) do not wake beat up about its own updates.
SELECT set_config('celeriac.beat_writer', 'on', true)
