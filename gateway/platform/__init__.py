"""The platform every layer uses: settings (`config.py`), the clock (`clock.py`), JSON logs
(`logs.py`), Prometheus metrics (`metrics.py`), the signing keys (`signing.py`) and the combiner
that groups concurrent calls (`combining.py`, the group commit of single events)."""
