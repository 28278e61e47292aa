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
def kmedoids_fit(
    kind: str, data: npt.NDArray[np.floating[Any]], metric: str, opts: dict[str, Any]
) -> dict[str, Any]: ...
def kmedoids_silhouette(
    kind: str, data: npt.NDArray[np.floating[Any]], metric: str, medoids: list[int]
) -> tuple[float, npt.NDArray[np.float64]]: ...
def kmedoids_matrix(
    kind: str, data: npt.NDArray[np.floating[Any]], metric: str
) -> npt.NDArray[np.floating[Any]]: ...
def kmedoids_dynmsc(
    kind: str, data: npt.NDArray[np.floating[Any]], metric: str, opts: dict[str, Any]
) -> dict[str, Any]: ...
