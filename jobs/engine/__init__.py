"""The job engine: the outbox table is the work queue, RQ only carries wake-ups.

Every side effect (a Credly call, a lookup sync, a webhook) is an outbox row written in the same
transaction as the change that calls for it, so nothing is sent before the commit and nothing
committed is lost when Redis or a worker is down. Workers claim due rows themselves
(`claim`: `FOR UPDATE SKIP LOCKED`, a lease, back-off in `due_at`) and run their handlers
(`outbox`); what travels through RQ is a `drain` wake-up (`dispatch`), which works due rows on
JOB_CONCURRENCY threads. `worker` runs RQ's worker, its scheduler, the relay that wakes workers
for rows whose wake-up was lost, and the daily cron; `context` holds the process's services.

Why the table and not an RQ job per item: docs/adr/0001-the-outbox-table-is-the-queue.md.
`rq info` therefore shows wake-ups only; `gateway jobs status` shows the backlog.
"""
