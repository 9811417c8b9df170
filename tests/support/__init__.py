"""Test helpers that are not fixtures (those stay in conftest): event builders, databases, API
clients, badge jobs, real processes and stand-ins for the outside world."""
