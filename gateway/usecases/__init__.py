"""The use cases: each module one thing the gateway does, owning its transaction."""
