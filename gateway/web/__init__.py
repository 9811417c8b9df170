"""The web layer: blueprints, OpenAPI, pages, auth, rate limits, problems (the request and answer
schemas are `gateway.schemas`)."""
