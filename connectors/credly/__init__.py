"""Credly connector: a typed client of Credly's REST API v1, a dry-run backend and the choice
between them.

- `wire.py`: what travels: Credly's paths and timestamps, the badge object (`Badge`), what
  issuing and replacing send (`BadgeRequest`), and choosing among a holder's badges.
- `errors.py`: how a call fails (`TransientError`, `PermanentError`, `NotFound`, ...).
- `service.py`: what the jobs need from Credly (`BadgeService`), and the reads built on it.
- `client.py`: `CredlyClient`, the HTTP client, and the bound on connections a process makes.
- `dry_run.py`: `DryRunCredly`, the embedded default's backend, its badges kept in SQLite.
- `backend.py`: `make_credly`, which of the two a process talks to.

Facts the package relies on (Credly web service docs, `credly.com/docs/issued_badges`,
`/docs/web_service_api`, `/docs/webhooks`):

- HTTP Basic auth with the organisation's authorization token as user name and an empty password;
  JSON bodies; every answer is an envelope `{"data": ..., "metadata": ...}`.
- `issued_at` / `expires_at` are sent as `"2014-04-01 09:41:00 -0500"`; Credly answers with ISO 8601
  (`"2014-04-01T14:41:00.000Z"`). `expires_at: null` means the template's default expiry and
  `false` means none (docs/credly.md, "Issuing").
- Credly refuses a duplicate (same template and the same e-mail or `issuer_earner_id`) with a 422;
  `holder_badges` looks a badge up the same way (docs/credly.md, "Duplicates").
- A replace sends only Credly's replace fields; a replaced badge names its successor in
  `metadata.current_badge_id` when it is replaced again (docs/credly.md, "Replacing").
- Lists are paged (`metadata.next_page_url` is null on the last page) and filtered with
  `filter=key::value|key::value`.
- No public source says what Credly answers when an already revoked badge is revoked again, so a 4xx
  on revoke is followed by a read of the badge: if it is revoked, the revoke succeeded; if it was
  replaced, that badge is answered as read, and the caller revokes its successor.
- A 401 or 403 means the token no longer works: `Unauthorized`, which the jobs wait out.

The package talks to the outside world only: it imports nothing of Flask, `gateway` or `jobs`.
"""
