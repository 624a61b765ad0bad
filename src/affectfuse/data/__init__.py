"""Labels, the feature dataset and collate: the data side of training and evaluation."""

from affectfuse.data.dataset import FeatureDataset, Sample, Standardizer, collate, resolve_key
from affectfuse.data.labels import (
    Labels,
    load_labels,
    read_affwild2,
    read_labels_csv,
    read_muse_reaction,
    read_vgaf,
    read_viper_csv,
)

__all__ = [
    "FeatureDataset",
    "Labels",
    "Sample",
    "Standardizer",
    "collate",
    "load_labels",
    "read_affwild2",
    "read_labels_csv",
    "read_muse_reaction",
    "read_vgaf",
    "read_viper_csv",
    "resolve_key",
]
