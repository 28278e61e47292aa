"""GPU paths: cupy in, cupy out.

One module per family mirrors the CPU modules (``svd``, ``projection``, ``fastrp``). Each
orchestration is written once against an array namespace, so the same code runs on cupy
arrays (kernels from ``python/rankcore/cuda`` through :mod:`rankcore._gpu._kernels`) and, in
CI, on NumPy arrays with the kernels' NumPy references (:mod:`rankcore._gpu._ops`). Nothing
here imports cupy at import time.
"""
