"""Web pages served by the platform."""
