# Type stubs for the compiled extension rankcore._core (rust/rankcore-python).
from typing import Any, final

import numpy as np
import numpy.typing as npt

__all__ = [
    "set_num_threads",
    "get_num_threads",
    "rsvd_dense",
    "rsvd_sparse",
    "centred_gram_dense",
    "covariance_eigh_dense",
    "random_matrix",
    "projection_transform_dense",
    "projection_transform_sparse",
    "projection_components",
    "fastrp_embed",
    "PROJECTION_STREAM_SPARSE",
    "PROJECTION_STREAM_GAUSSIAN",
    "PROJECTION_STREAM_FASTRP_FEATURES",
    "kron_eigh",
    "kron_apply",
    "kron_solve_eig",
    "kron_logdet_eig",
    "gp_kernel_matrix",
    "gp_kernel_grads",
    "gp_kernel_grad_contract",
    "gp_lml",
    "gp_lml_incomplete",
    "gp_predict_grid",
    "gp_predict_points",
    "gp_pcg_solve",
    "multi_mode_dot",
    "tucker_decompose",
    "flora_delta",
    "flora_delta_vjp",
    "kmedoids_fit",
    "kmedoids_silhouette",
    "kmedoids_matrix",
    "kmedoids_dynmsc",
    "PdeProblem",
    "pde_boundary_cells",
    "funbat_smooth",
    "funbat_evidence",
    "funbat_interpolate",
    "funbat_mode_messages",
    "funbat_core_sums",
    "funbat_predict_moments",
    "funbat_core_posterior",
]

def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def rsvd_dense(a: npt.NDArray[np.floating[Any]], opts: dict[str, Any]) -> dict[str, Any]: ...
def rsvd_sparse(
    shape: tuple[int, int],
    csc: bool,
    indptr: npt.NDArray[np.integer[Any]],
    indices: npt.NDArray[np.integer[Any]],
    data: npt.NDArray[np.floating[Any]],
    opts: dict[str, Any],
) -> dict[str, Any]: ...
def centred_gram_dense(
    x: npt.NDArray[np.floating[Any]], center: bool
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
def covariance_eigh_dense(
    x: npt.NDArray[np.floating[Any]],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
def random_matrix(
    kind: str, seed: int, stream: int, row0: int, col0: int, nrows: int, ncols: int
) -> npt.NDArray[np.float64]: ...

# Random projections and FastRP (rust/rankcore-python/src/projection.rs).
PROJECTION_STREAM_SPARSE: int
PROJECTION_STREAM_GAUSSIAN: int
PROJECTION_STREAM_FASTRP_FEATURES: int

def projection_transform_dense(x: npt.NDArray[np.floating[Any]], opts: dict[str, Any]) -> npt.NDArray[np.floating[Any]]: ...
def projection_transform_sparse(
    shape: tuple[int, int],
    indptr: npt.NDArray[np.integer[Any]],
    indices: npt.NDArray[np.integer[Any]],
    data: npt.NDArray[np.floating[Any]],
    opts: dict[str, Any],
    dense_output: bool,
) -> Any: ...
def projection_components(opts: dict[str, Any], dtype: str, dense: bool = False) -> Any: ...
def fastrp_embed(
    n: int,
    indptr: npt.NDArray[np.integer[Any]],
    indices: npt.NDArray[np.integer[Any]],
    data: npt.NDArray[np.floating[Any]],
    features: npt.NDArray[np.floating[Any]] | None,
    opts: dict[str, Any],
) -> npt.NDArray[np.floating[Any]]: ...
# Kronecker algebra (rust/rankcore-python/src/kron.rs)
def kron_eigh(ks: list[npt.NDArray[Any]]) -> tuple[list[npt.NDArray[Any]], list[npt.NDArray[Any]]]: ...
def kron_apply(mats: list[npt.NDArray[Any]], x: npt.NDArray[Any]) -> npt.NDArray[Any]: ...
def kron_solve_eig(
    qs: list[npt.NDArray[Any]], lams: list[npt.NDArray[Any]], scale: float, noise: float, y: npt.NDArray[Any]
) -> npt.NDArray[Any]: ...
def kron_logdet_eig(
    qs: list[npt.NDArray[Any]], lams: list[npt.NDArray[Any]], scale: float, noise: float, diag: bool
) -> Any: ...

# Grid Gaussian processes (rust/rankcore-python/src/gp.rs)
def gp_kernel_matrix(
    kind: str, params: npt.NDArray[np.float64], x1: npt.NDArray[np.float64], x2: npt.NDArray[np.float64], a: int, b: int
) -> npt.NDArray[np.float64]: ...
def gp_kernel_grads(
    kind: str, params: npt.NDArray[np.float64], x1: npt.NDArray[np.float64], x2: npt.NDArray[np.float64]
) -> list[npt.NDArray[np.float64]]: ...
def gp_kernel_grad_contract(
    kind: str, params: npt.NDArray[np.float64], x: npt.NDArray[np.float64], w: npt.NDArray[np.float64]
) -> list[float]: ...
def gp_lml(
    qs: list[npt.NDArray[Any]], lams: list[npt.NDArray[Any]], scale: float, noise: float, y: npt.NDArray[Any], grad: bool
) -> dict[str, Any]: ...
def gp_lml_incomplete(
    qs: list[npt.NDArray[Any]],
    lams: list[npt.NDArray[Any]],
    scale: float,
    observed: npt.NDArray[np.int64],
    noise: npt.NDArray[Any],
    y: npt.NDArray[Any],
    tol: float,
    max_iter: int,
    grad: bool,
) -> dict[str, Any]: ...
def gp_predict_grid(
    qs: list[npt.NDArray[Any]], lams: list[npt.NDArray[Any]], scale: float, noise: float, alpha: npt.NDArray[Any], want_var: bool
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]: ...
def gp_predict_points(
    qs: list[npt.NDArray[Any]],
    lams: list[npt.NDArray[Any]],
    scale: float,
    noise: float,
    alpha: npt.NDArray[Any],
    cross: list[npt.NDArray[Any]],
    prior_var: float,
    want_var: bool,
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]: ...
def gp_pcg_solve(
    qs: list[npt.NDArray[Any]],
    lams: list[npt.NDArray[Any]],
    scale: float,
    observed: npt.NDArray[np.int64],
    noise: npt.NDArray[Any],
    b: npt.NDArray[Any],
    tol: float,
    max_iter: int,
) -> tuple[npt.NDArray[Any], int, float]: ...
# Tucker decompositions and FLoRA (rust/rankcore-python/src/tucker.rs)
def multi_mode_dot(
    t: npt.NDArray[np.floating[Any]],
    mats: list[npt.NDArray[np.floating[Any]]],
    modes: list[int],
) -> npt.NDArray[np.floating[Any]]: ...
def tucker_decompose(
    t: npt.NDArray[np.floating[Any]],
    opts: dict[str, Any],
    mask: npt.NDArray[np.uint8] | None = None,
    init: list[npt.NDArray[np.floating[Any]]] | None = None,
) -> dict[str, Any]: ...
def flora_delta(
    core: npt.NDArray[np.floating[Any]],
    factors: list[npt.NDArray[np.floating[Any]]],
    scale: float,
) -> npt.NDArray[np.floating[Any]]: ...
def flora_delta_vjp(
    core: npt.NDArray[np.floating[Any]],
    factors: list[npt.NDArray[np.floating[Any]]],
    grad: npt.NDArray[np.floating[Any]],
    scale: float,
) -> tuple[npt.NDArray[np.floating[Any]], list[npt.NDArray[np.floating[Any]]]]: ...
# A k-medoids source: an array ("square", "condensed", "features"), or for kind "csr" the
# tuple (values, indptr as int64, indices as int64, n_features).
_KmSource = npt.NDArray[np.floating[Any]] | tuple[
    npt.NDArray[np.floating[Any]], npt.NDArray[np.int64], npt.NDArray[np.int64], int
]

def kmedoids_fit(kind: str, data: _KmSource, metric: str, opts: dict[str, Any]) -> dict[str, Any]: ...
def kmedoids_silhouette(
    kind: str, data: _KmSource, metric: str, medoids: list[int]
) -> tuple[float, npt.NDArray[np.float64]]: ...
def kmedoids_matrix(kind: str, data: _KmSource, metric: str) -> npt.NDArray[np.floating[Any]]: ...
def kmedoids_dynmsc(kind: str, data: _KmSource, metric: str, opts: dict[str, Any]) -> dict[str, Any]: ...

# --- GP-HM PDE solver (rankcore.pde) ---------------------------------------------------

@final
class PdeProblem:
    def __new__(
        cls,
        axes: list[npt.NDArray[np.float64]] | list[list[float]],
        orders: list[list[int]],
        coefs: list[npt.NDArray[np.floating[Any]]],
        source: npt.NDArray[np.floating[Any]],
        boundary: list[int],
        boundary_values: npt.NDArray[np.floating[Any]],
        boundary_weight: float,
        nugget: float,
    ) -> PdeProblem: ...
    def objective(
        self,
        kinds: list[str],
        kparams: list[list[float]],
        log_tau_b: float,
        log_tau_r: float,
        u: npt.NDArray[np.floating[Any]],
        phi: npt.NDArray[np.floating[Any]] | None = None,
        dphi: npt.NDArray[np.floating[Any]] | None = None,
        grad: bool = True,
    ) -> dict[str, Any]: ...
    def predict_grid(
        self,
        kinds: list[str],
        kparams: list[list[float]],
        u: npt.NDArray[np.floating[Any]],
        test_axes: list[list[float]],
        orders: list[int],
    ) -> npt.NDArray[np.floating[Any]]: ...
    def predict_points(
        self,
        kinds: list[str],
        kparams: list[list[float]],
        u: npt.NDArray[np.floating[Any]],
        points: npt.NDArray[np.float64],
    ) -> npt.NDArray[np.floating[Any]]: ...
    def cholesky_factors(self, kinds: list[str], kparams: list[list[float]]) -> list[npt.NDArray[np.float64]]: ...
    def kernel_contract(
        self,
        kinds: list[str],
        kparams: list[list[float]],
        d: int,
        w: npt.NDArray[np.float64] | None,
        w1: npt.NDArray[np.float64] | None = None,
        w2: npt.NDArray[np.float64] | None = None,
    ) -> list[float]: ...

def pde_boundary_cells(shape: list[int]) -> list[int]: ...

# FunBaT (rust/rankcore-python/src/funbat.rs). Arrays C-contiguous in, flat arrays out.
def funbat_smooth(
    kind: str,
    lengthscale: float,
    variance: float,
    r: int,
    x: npt.NDArray[np.floating[Any]],
    lam: npt.NDArray[np.floating[Any]],
    eta: npt.NDArray[np.floating[Any]],
) -> dict[str, Any]: ...
def funbat_evidence(
    kind: str,
    params: npt.NDArray[np.float64],
    r: int,
    x: npt.NDArray[np.floating[Any]],
    lam: npt.NDArray[np.floating[Any]],
    eta: npt.NDArray[np.floating[Any]],
) -> list[float]: ...
def funbat_interpolate(
    kind: str,
    lengthscale: float,
    variance: float,
    r: int,
    x: npt.NDArray[np.floating[Any]],
    states: list[npt.NDArray[np.floating[Any]]],
    xq: npt.NDArray[np.floating[Any]],
) -> tuple[npt.NDArray[np.floating[Any]], npt.NDArray[np.floating[Any]]]: ...
def funbat_mode_messages(
    k: int,
    ranks: list[int],
    core: str,
    nodes: list[int],
    idx: npt.NDArray[np.int64],
    y: npt.NDArray[np.floating[Any]],
    means: list[npt.NDArray[np.floating[Any]]],
    seconds: list[npt.NDArray[np.floating[Any]]],
    mu: npt.NDArray[np.floating[Any]],
    m2: npt.NDArray[np.floating[Any]],
    etau: float,
) -> tuple[npt.NDArray[np.floating[Any]], npt.NDArray[np.floating[Any]]]: ...
def funbat_core_sums(
    ranks: list[int],
    core: str,
    nodes: list[int],
    idx: npt.NDArray[np.int64],
    y: npt.NDArray[np.floating[Any]],
    means: list[npt.NDArray[np.floating[Any]]],
    seconds: list[npt.NDArray[np.floating[Any]]],
) -> tuple[npt.NDArray[np.floating[Any]], npt.NDArray[np.floating[Any]]]: ...
def funbat_predict_moments(
    ranks: list[int],
    core: str,
    means: list[npt.NDArray[np.floating[Any]]],
    seconds: list[npt.NDArray[np.floating[Any]]] | None,
    mu: npt.NDArray[np.floating[Any]],
    m2: npt.NDArray[np.floating[Any]],
) -> tuple[npt.NDArray[np.floating[Any]], npt.NDArray[np.floating[Any]]]: ...
def funbat_core_posterior(
    lam: npt.NDArray[np.floating[Any]], eta: npt.NDArray[np.floating[Any]]
) -> tuple[npt.NDArray[np.floating[Any]], npt.NDArray[np.floating[Any]]]: ...
