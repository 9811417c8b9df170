"""The platform: settings, logging, metrics, the web server's settings, signing keys."""
