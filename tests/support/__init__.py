"""Test helpers that are not fixtures: stand-ins for the outside world."""
