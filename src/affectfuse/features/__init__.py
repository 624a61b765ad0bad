"""Feature storage and importers."""
