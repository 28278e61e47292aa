"""rankcore: fast structured and low-rank linear algebra with a scikit-learn face.

The public API, nothing else: README.md lists it; each function documents itself.
"""

from rankcore import flora, pde
from rankcore._threads import get_num_threads, set_num_threads, threads
from rankcore.fastrp import FastRP, fastrp
from rankcore.funbat import FunBaT, FunCP
from rankcore.gp import GridGPRegressor
from rankcore.kmedoids import (
    DynMscResult,
    KMedoids,
    KMedoidsResult,
    dynmsc,
    kmedoids,
    medoid_silhouette,
)
from rankcore.kron import kron_logdet, kron_matvec, kron_solve, kron_solve_logdet
from rankcore.projection import (
    GaussianRandomProjection,
    SparseRandomProjection,
    johnson_lindenstrauss_min_dim,
    random_projection,
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
    tucker_to_unfolded,
    tucker_to_vec,
    unfold,
)

__version__ = "0.1.0"

__all__ = [
    "DynMscResult",
    "FastRP",
    "FunBaT",
    "FunCP",
    "GaussianRandomProjection",
    "GridGPRegressor",
    "KMedoids",
    "KMedoidsResult",
    "RandomizedPCA",
    "RandomizedSVD",
    "SparseRandomProjection",
    "Tucker",
    "TuckerTensor",
    "dynmsc",
    "fastrp",
    "flora",
    "fold",
    "get_num_threads",
    "johnson_lindenstrauss_min_dim",
    "kmedoids",
    "kron_logdet",
    "kron_matvec",
    "kron_solve",
    "kron_solve_logdet",
    "medoid_silhouette",
    "mode_dot",
    "multi_mode_dot",
    "partial_tucker",
    "pde",
    "random_projection",
    "randomized_svd",
    "set_num_threads",
    "threads",
    "tucker",
    "tucker_to_tensor",
    "tucker_to_unfolded",
    "tucker_to_vec",
    "unfold",
]
