"""Dask implementations, one module per family, routed by :func:`rankcore._backend.dispatch`.

Everything here builds on dask's own graphs, schedulers and fault tolerance
(``map_blocks``, ``blockwise``, matrix products with tree-summed reductions); there is no
scheduler of our own. Each task calls the same Rust kernels as the in-memory path, random
matrices are regenerated per block from the seed, and nothing assumes that the workers
share a filesystem or the client's memory: tasks are module-level functions of this
package, called with their block and a few small arguments.

``import rankcore`` never imports dask; these modules are imported only when a dask array
reaches a public function.
"""
