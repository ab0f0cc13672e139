"""The classic-vision baseline (seed 000): hand-made features plus a classical classifier, run like a CNN."""

from cnnjax.classic.features import (
    FEATURES,
    edge_grid_features,
    extract_features,
    hog_features,
    intensity_histogram_features,
    pixel_features,
)
from cnnjax.classic.train import CLASSIFIERS, make_classifier, train_and_evaluate_classic

__all__ = [
    "CLASSIFIERS",
    "FEATURES",
    "edge_grid_features",
    "extract_features",
    "hog_features",
    "intensity_histogram_features",
    "make_classifier",
    "pixel_features",
    "train_and_evaluate_classic",
]
