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
