"""rankcore's thread pool as threadpoolctl sees it."""

import pytest

import rankcore

threadpoolctl = pytest.importorskip("threadpoolctl")


def _rankcore_entries():
    return [i for i in threadpoolctl.threadpool_info() if i["internal_api"] == "rankcore"]


def test_threadpool_info_lists_our_pool_once():
    (entry,) = _rankcore_entries()
    assert entry["user_api"] == "rankcore"
    assert entry["num_threads"] == rankcore.get_num_threads()
    assert entry["filepath"].endswith(rankcore._core.__file__.rsplit("/", 1)[-1])


def test_threadpool_limits_governs_our_pool_and_restores_it():
    with rankcore.threads(2):
        with threadpoolctl.threadpool_limits(limits=1):
            assert rankcore.get_num_threads() == 1
        assert rankcore.get_num_threads() == 2
        with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
            assert rankcore.get_num_threads() == 2  # other APIs leave ours alone
        with threadpoolctl.threadpool_limits(limits={"rankcore": 1}):
            assert rankcore.get_num_threads() == 1
        assert rankcore.get_num_threads() == 2


def test_controller_api_clamps_counts_below_one():
    (controller,) = threadpoolctl.ThreadpoolController().select(internal_api="rankcore").lib_controllers
    with rankcore.threads(2):
        controller.set_num_threads(0)
        assert rankcore.get_num_threads() == 1


def _blas_threads():
    return {i["filepath"]: i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}


def test_one_blas_thread_limits_blas_only_and_restores_it():
    from rankcore._threads import one_blas_thread

    before = _blas_threads()
    assert before  # numpy's and scipy's OpenBLAS
    with rankcore.threads(2):
        with one_blas_thread():
            assert set(_blas_threads().values()) == {1}
            assert rankcore.get_num_threads() == 2
        assert _blas_threads() == before


@pytest.mark.parametrize("n, serial", [(500, True), (700, False)])
def test_covariance_route_runs_small_eigensolvers_on_one_blas_thread(monkeypatch, n, serial):
    """Below ``_THREADED_EIGH_FEATURES`` columns LAPACK's eigensolver runs on one thread (its
    spinning workers would otherwise slow the next rayon region); the result is the same."""
    import numpy as np
    import scipy.linalg

    from rankcore import svd

    seen = []
    eigh = scipy.linalg.eigh

    def spy(*args, **kwargs):
        seen.append(max(_blas_threads().values()))
        return eigh(*args, **kwargs)

    X = np.random.default_rng(0).standard_normal((3 * n, n))
    G = np.cov(X, rowvar=False)
    expected = np.linalg.eigvalsh(G)[::-1][:5]
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        monkeypatch.setattr(scipy.linalg, "eigh", spy)
        evals, _, _ = svd._eigh_desc(G.copy(), 5)
    assert seen == [1 if serial else 2]
    np.testing.assert_allclose(evals, expected, rtol=1e-12)
