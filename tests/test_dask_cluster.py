"""The ``dask.distributed`` cluster that the dask tests share, and checks of it.

One ``LocalCluster`` (2 worker processes, 1 thread and a memory limit each) is started by the
first module that asks for it and closed at the end of the session (``config.add_cleanup``),
so the dask test modules do not each pay for starting and warming up worker processes. Each
test module imports the two fixtures::

    from test_dask_cluster import cluster, scheduler  # noqa: F401

``scheduler`` runs every test that takes it twice: on the cluster (a ``Client``) and on
dask's threaded scheduler.
"""

from __future__ import annotations

import os

import pytest

dask = pytest.importorskip("dask")

N_WORKERS = 2
MEMORY_LIMIT = "1GiB"
_STATE: dict = {}


def shared_cluster(request: pytest.FixtureRequest):
    """The session's ``LocalCluster``, started on first use and closed when pytest ends."""
    if "cluster" not in _STATE:
        distributed = pytest.importorskip("distributed")
        c = distributed.LocalCluster(n_workers=N_WORKERS, threads_per_worker=1, processes=True,
                                     memory_limit=MEMORY_LIMIT, dashboard_address=":0")

        def close() -> None:
            _STATE.pop("cluster", None)
            c.close()

        _STATE["cluster"] = c
        request.config.add_cleanup(close)
    return _STATE["cluster"]


@pytest.fixture(scope="module")
def cluster(request):
    return shared_cluster(request)


@pytest.fixture(scope="module", params=["distributed", "threads"])
def scheduler(request):
    if request.param == "distributed":
        from distributed import Client

        with Client(shared_cluster(request)) as client:
            client.wait_for_workers(N_WORKERS, timeout=60)
            yield client
    else:
        with dask.config.set(scheduler="threads"):
            yield None


def test_cluster_runs_separate_worker_processes(cluster):
    from distributed import Client

    with Client(cluster) as client:
        client.wait_for_workers(N_WORKERS, timeout=60)
        pids = client.run(os.getpid)
        info = client.scheduler_info()["workers"]
    assert len(set(pids.values())) == N_WORKERS and os.getpid() not in pids.values()
    assert all(w["nthreads"] == 1 and w["memory_limit"] == 2**30 for w in info.values())
    # The workers import rankcore from their own process: tasks are plain module functions.
    with Client(cluster) as client:
        assert set(client.run(lambda: __import__("rankcore._dask.svd").__name__).values()) == {"rankcore"}
