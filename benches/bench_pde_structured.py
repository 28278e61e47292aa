"""Structured exact inner solve of GP-HM (rankcore.pde._structured.solve_whitened) on 2-D grids.

At fixed kernel parameters the GP-HM objective is quadratic in the whitened grid values; this
bench solves it on 2-D Poisson problems on [0, 2π]² with the solver's default kernel
initialisation (gm spectral mixture, Q = 30, frequencies linspace(0, 20), ℓ = 1) and reports
per grid: preconditioned-CG iterations, setup and solve seconds, the relative residual of the
normal equations, and the **relative L2 error of U against the exact u on the grid** (the
accuracy attainable with this kernel, nugget and precisions; the outer loop that adapts the
kernel can only do better). Precisions: τ = e¹⁰, β = 200 e¹⁰ (the solver's upper bounds).

Cases (``--cases``):

- ``poisson``: Δu = f, u = sin(20x) sin(20y), grids 60², 120², 200², 400²; and u =
  sin(100x) sin(100y) on 400²; and the catalogue's ``poisson_2d_sin20`` kernel
  (freq_scale = 5) on 120².
- ``allen_cahn``: one Gauss–Newton step of Δu + u(u² − 1) = f at the exact solution
  (s = 3u² − 1, target Δu + s u), same grids up to 200².
- ``nugget``: ν = 1e-8 instead of 1e-6 on 200² (sin 20) and 400² (sin 100).
- ``two_level``: the default ``method="two_level"`` (a coarse correction where the diagonal
  preconditioner is blind) beside ``method="primal"`` on grids where the primal stalls:
  120² and 200² with the catalogue's freq_scale = 5 kernel, 2-D Allen–Cahn's Gauss–Newton
  step at 120², and sin(100x) sin(100y) on 400² (freq_scale 20); the objectives side by side.
- ``alternatives``: on 120² and 200² (and 120² with the freq_scale = 5 kernel), the iteration
  counts of plain CG, of CG with the diagonal ``P₀`` only (no Woodbury boundary correction),
  of the chosen preconditioner, and of the dual (data-space) method (capped at 400
  iterations, or stopped on stagnation).

There is no anchor library for this sub-problem; the dense solve it replaces is O(N³)
(N = 160 000 on 400² would need 200 GB for the matrix alone).

    python benches/bench_pde_structured.py [--quick] [--threads N] [--cases ...]

``--quick``: grids 60² and 120² only. Results: bench-results/bench_pde_structured.json.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H  # noqa: E402

CASES = ("poisson", "allen_cahn", "nugget", "alternatives", "two_level")
TAU = float(np.exp(10.0))
BETA = 200.0 * TAU


def _modules():
    rc = H.import_rankcore("pde")
    if rc is None:
        sys.exit(1)
    from rankcore.pde import _gm_numpy, _structured

    return _gm_numpy, _structured


def _problem(gm, n: int, k: float, nugget: float, freq_scale: float = 20.0):
    """Per-dimension matrices, exact u, Laplacian source and boundary cells of sin(kx)sin(ky)."""
    x = np.linspace(0.0, 2 * np.pi, n)
    L, _, D2, _ = gm.gm_matrices(x, *gm.default_params(freq_scale=freq_scale), nugget=nugget)
    u = np.outer(np.sin(k * x), np.sin(k * x))
    lap = -2 * k * k * u
    mask = np.ones((n, n), dtype=bool)
    mask[1:-1, 1:-1] = False
    bidx = np.flatnonzero(mask)
    return [L, L], [(1.0, [D2, None]), (1.0, [None, D2])], u, lap, bidx


def _solve(st, Ls, terms, target, bidx, g, diag=None, **kw):
    t0 = time.perf_counter()
    Z, info = st.solve_whitened(Ls, terms, target, bidx, g, TAU, BETA, diag=diag, **kw)
    info["seconds"] = time.perf_counter() - t0
    U = Ls[0] @ Z @ Ls[1].T
    return U, info


def _row(label, n, k, nugget, U, u, info):
    err = float(np.linalg.norm(U - u) / np.linalg.norm(u))
    row = {
        "case": label, "grid": f"{n}x{n}", "u": f"sin({k:g}x)sin({k:g}y)", "nugget": nugget,
        "iterations": info["iterations"], "setup_s": info["setup_seconds"],
        "total_s": info["seconds"], "residual": info["residual"], "rel_l2_error": err,
        "converged": bool(info["converged"]),
    }
    print(
        f"{label:<13} {row['grid']:>8} {row['u']:>18} ν={nugget:.0e} it={row['iterations']:4d} "
        f"setup={row['setup_s']:7.2f}s total={row['total_s']:7.2f}s res={row['residual']:.1e} "
        f"err={err:.2e} conv={row['converged']}",
        flush=True,
    )
    return row


def _alternatives(gm, st, n, freq_scale):
    """Iterations to rtol 1e-10 of plain CG, diagonal-only PCG and the chosen PCG."""
    Ls, terms, u, lap, bidx = _problem(gm, n, 20.0, 1e-6, freq_scale)
    out = {}
    orig = st._Preconditioner.apply
    variants = {
        "none": lambda self, x: x.copy(),
        "diagonal P0": lambda self, x: x / self.p0,
        "P0 + Woodbury": orig,
        "dual": orig,
    }
    try:
        for name, fn in variants.items():
            st._Preconditioner.apply = fn
            method = "dual" if name == "dual" else "primal"
            U, info = _solve(st, Ls, terms, lap, bidx, u.ravel()[bidx], rtol=1e-10, maxiter=400, method=method)
            err = float(np.linalg.norm(U - u) / np.linalg.norm(u))
            # the stopping quantity is preconditioner-dependent; the true residual is not
            out[name] = {"iterations": info["iterations"], "residual": info["residual"], "rel_l2_error": err,
                         "total_s": info["seconds"]}
            print(f"alternatives {n}x{n} fs={freq_scale:g} {name:<14} it={info['iterations']:4d} res={info['residual']:.1e} "
                  f"err={err:.2e} {info['seconds']:.2f}s", flush=True)
    finally:
        st._Preconditioner.apply = orig
    return out


def main(argv=None) -> None:
    args, chosen = H.parse_args(__doc__, argv, cases=CASES)
    gm, st = _modules()
    sizes = (60, 120) if args.quick else (60, 120, 200, 400)
    rows, alts = [], {}
    with H.anchor_threads(args.threads):
        if "poisson" in chosen:
            for n in sizes:
                Ls, terms, u, lap, bidx = _problem(gm, n, 20.0, 1e-6)
                U, info = _solve(st, Ls, terms, lap, bidx, u.ravel()[bidx])
                rows.append(_row("poisson", n, 20, 1e-6, U, u, info))
            # the catalogue's poisson_2d_sin20 kernel (freq_scale = 5): band edge below Nyquist
            Ls, terms, u, lap, bidx = _problem(gm, 120, 20.0, 1e-6, freq_scale=5.0)
            U, info = _solve(st, Ls, terms, lap, bidx, u.ravel()[bidx])
            rows.append(_row("poisson fs=5", 120, 20, 1e-6, U, u, info))
            if not args.quick:
                Ls, terms, u, lap, bidx = _problem(gm, 400, 100.0, 1e-6)
                U, info = _solve(st, Ls, terms, lap, bidx, u.ravel()[bidx])
                rows.append(_row("poisson", 400, 100, 1e-6, U, u, info))
        if "allen_cahn" in chosen:
            for n in sizes[:3]:
                Ls, terms, u, lap, bidx = _problem(gm, n, 20.0, 1e-6)
                s = 3 * u * u - 1
                U, info = _solve(st, Ls, terms, lap + s * u, bidx, u.ravel()[bidx], diag=s)
                rows.append(_row("allen_cahn", n, 20, 1e-6, U, u, info))
        if "nugget" in chosen:
            for n, k in ((120, 20.0),) if args.quick else ((200, 20.0), (400, 100.0)):
                Ls, terms, u, lap, bidx = _problem(gm, n, k, 1e-8)
                U, info = _solve(st, Ls, terms, lap, bidx, u.ravel()[bidx])
                rows.append(_row("nugget", n, k, 1e-8, U, u, info))
        if "two_level" in chosen:
            cases = [("two_level", False, 120, 20.0, 5.0), ("two_level ac", True, 120, 20.0, 5.0),
                     ("two_level", False, 200, 20.0, 5.0), ("two_level", False, 400, 100.0, 20.0)]
            for label, with_s, n, k, fs in cases[:1] if args.quick else cases:
                Ls, terms, u, lap, bidx = _problem(gm, n, k, 1e-6, freq_scale=fs)
                s = 3 * u * u - 1 if with_s else None
                target = lap + s * u if with_s else lap
                for method in ("primal", "two_level"):
                    U, info = _solve(st, Ls, terms, target, bidx, u.ravel()[bidx], diag=s, method=method)
                    row = _row(f"{label} {method[:6]}", n, k, 1e-6, U, u, info)
                    row.update(method=method, coarse=info["coarse"], objective=info["objective"])
                    print(f"    objective {info['objective']:.6e}, coarse space {info['coarse']}", flush=True)
                    rows.append(row)
        if "alternatives" in chosen:
            for n, fs in ((120, 20.0), (200, 20.0), (120, 5.0)):
                alts[f"{n}x{n} fs={fs:g}"] = _alternatives(gm, st, n, fs)
    name = "bench_pde_structured" + ("-quick" if args.quick else "")
    path = H.write_results(name, {"threads": args.threads, "rows": rows, "alternatives": alts})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
