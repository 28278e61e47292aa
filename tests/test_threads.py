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
