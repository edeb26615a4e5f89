"""The site agent: connects a site's engine to the platform over outbound HTTPS."""
