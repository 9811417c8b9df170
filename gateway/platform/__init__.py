"""The platform: settings, the clock, logging, metrics, the web server's settings, signing keys,
and the group commit of single events."""
