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
