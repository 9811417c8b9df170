"""RQ jobs: thin functions that load a record, call a connector and record the result."""
