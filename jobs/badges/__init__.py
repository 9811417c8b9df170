"""Badge jobs: issue, replace and revoke a certification's Credly badge, idempotently.

What they rely on Credly doing is in docs/credly.md: an issue that fails (or times out) may still
have made the badge, so it is looked up the way Credly counts duplicates and adopted; a revoke
leaves no live badge of the certification, known here or not; a replaced badge is followed to its
successor.

Each module uses only those before it: `states.py` (our states of a badge), `notes.py` (the
sentences recorded on a badge and in its errors), `recipient.py` (what a badge is issued from),
`rows.py` (what the jobs read and record on the badge rows, `given_up` among it), `turn.py` (a
certification's badge jobs call Credly one at a time), `credly_calls.py` (issue or adopt, revoke,
follow a replaced badge), then the jobs: `revoke.py`, `replace.py` and `issue.py`.
"""

import logging

#: One logger for all the badge jobs' modules (log lines are filtered on its name).
log = logging.getLogger("jobs.badges")
