"""Thin HTTP blueprints over the use cases."""
