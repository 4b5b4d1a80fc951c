"""A kernel for N = 50000 points, computed tile by tile on a LocalCluster.

The (50000, 50000) SG-NTK of a depth-3 sign network is 20 GB in float64: more than this
machine can hold next to its workers. It is never assembled: each worker computes
(chunk x chunk) tiles and the cluster reduces them (here: K @ v and the diagonal), so a
worker holds only a few tiles at a time.

    python docs/distributed_example.py [N] [CHUNK]

On a multi-node cluster, pass a Client connected to its scheduler instead of the
LocalCluster (e.g. `Client("tcp://scheduler:8786")`); on GPU nodes start the workers with
`dask_cuda.LocalCUDACluster` / `dask-cuda-worker` and GPUKERN_BACKEND=cupy.
"""

import resource
import sys
import time

import dask.array as da
import numpy as np
from distributed import Client, LocalCluster

import gpukern as gk
from gpukern.distributed import kernel_array


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main(n: int = 50000, chunk: int = 2500) -> None:
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None, memory_limit="8GiB")
    client = Client(cluster)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 16))
    v = rng.normal(size=n)
    net = gk.MLP(3, gk.activations.sign(), gk.surrogates.erf(1.0), bias_std=0.1)
    t0 = time.perf_counter()
    k = kernel_array(net, x, which="sgntk", chunks=chunk, client=client)
    kv, diag = client.compute([k @ v, da.diagonal(k)], sync=True)
    seconds = time.perf_counter() - t0
    workers = client.run(peak_rss_gib)
    print(f"N = {n}, chunks {chunk}: {seconds:.1f} s on {len(workers)} workers; "
          f"peak RSS per worker (GiB): {', '.join(f'{g:.2f}' for g in workers.values())}; "
          f"client process {peak_rss_gib():.2f} GiB")
    print(f"|K v| = {np.linalg.norm(kv):.6g}, mean diagonal {diag.mean():.6g}")
    # spot check a few rows against the local computation
    rows = rng.choice(n, 3, replace=False)
    local = net.sgntk(x[rows], x)
    assert np.array_equal(local @ v, kv[rows]) or np.allclose(local @ v, kv[rows], rtol=1e-12)
    print("spot check of 3 rows of K v against net.sgntk: ok")
    client.close()
    cluster.close()


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
