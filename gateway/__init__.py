"""credential-gateway: certification events in, standing out, Credly badges and lookups in step."""
