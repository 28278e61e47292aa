# Type stubs for the compiled extension rankcore._core (rust/rankcore-python).
from typing import Any

import numpy as np
import numpy.typing as npt

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
def random_matrix(
    kind: str, seed: int, stream: int, row0: int, col0: int, nrows: int, ncols: int
) -> npt.NDArray[np.float64]: ...

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
