"""Feature storage and importers."""

from affectfuse.features.importers import import_features
from affectfuse.features.store import FeatureStore

__all__ = ["FeatureStore", "import_features"]
