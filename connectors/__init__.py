"""Clients of the outside world: Credly (`credly/`), employers' webhook receivers
(`employer_webhooks.py`), the verification directory (`directory.py`), and the failures they all
report (`errors.py`). Nothing here imports Flask, `gateway` or `jobs`."""
