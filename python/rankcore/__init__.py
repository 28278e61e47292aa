"""rankcore: fast structured and low-rank linear algebra with a scikit-learn face.

The public API, nothing else: README.md lists it; each function documents itself.
"""

from rankcore.gp import GridGPRegressor
from rankcore.kron import kron_logdet, kron_matvec, kron_solve
from rankcore._threads import get_num_threads, set_num_threads, threads
from rankcore.fastrp import FastRP, fastrp
from rankcore.projection import (
    GaussianRandomProjection,
    SparseRandomProjection,
    johnson_lindenstrauss_min_dim,
    random_projection,
from rankcore.kmedoids import (
    DynMscResult,
    KMedoids,
    KMedoidsResult,
    dynmsc,
    kmedoids,
    medoid_silhouette,
)
from rankcore.svd import RandomizedPCA, RandomizedSVD, randomized_svd
from rankcore.tucker import (
    Tucker,
    TuckerTensor,
    fold,
    mode_dot,
    multi_mode_dot,
    partial_tucker,
    tucker,
    tucker_to_tensor,
    unfold,
)
from rankcore import flora

__version__ = "0.1.0"

__all__ = [
    "FastRP",
    "GaussianRandomProjection",
    "SparseRandomProjection",
    "fastrp",
    "johnson_lindenstrauss_min_dim",
    "random_projection",
    "GridGPRegressor",
    "kron_logdet",
    "kron_matvec",
    "kron_solve",
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
    "Tucker",
    "TuckerTensor",
    "flora",
    "fold",
    "mode_dot",
    "multi_mode_dot",
    "partial_tucker",
    "tucker",
    "tucker_to_tensor",
    "unfold",
]
