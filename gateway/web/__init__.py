"""The web layer: blueprints, schemas, OpenAPI, pages, auth, rate limits, problems."""
