"""rankcore: fast structured and low-rank linear algebra with a scikit-learn face.

The public API, nothing else: README.md lists it; each function documents itself.
"""

from rankcore._threads import get_num_threads, set_num_threads, threads
from rankcore.kmedoids import (
    DynMscResult,
    KMedoids,
    KMedoidsResult,
    dynmsc,
    kmedoids,
    medoid_silhouette,
)
from rankcore.svd import RandomizedPCA, RandomizedSVD, randomized_svd

__version__ = "0.1.0"

__all__ = [
    "DynMscResult",
    "KMedoids",
    "KMedoidsResult",
    "RandomizedPCA",
    "RandomizedSVD",
    "dynmsc",
    "get_num_threads",
    "kmedoids",
    "medoid_silhouette",
    "randomized_svd",
    "set_num_threads",
    "threads",
]
