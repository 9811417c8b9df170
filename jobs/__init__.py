"""Side effects: the outbox items' handlers (badges, deliveries, the lookup record's sync, notices,
Credly's notifications), each loading a record, calling a connector and recording the result; the
daily cron and the reconciliation with Credly; and `engine/`, the queue engine (the outbox table is
the work queue, RQ carries only wake-ups)."""
