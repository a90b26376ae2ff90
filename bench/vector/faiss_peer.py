#!/usr/bin/python3
"""bench/vector/faiss_peer.py - FAISS's side of bench/vector (Debian's
python3-faiss, 1.7.3), on one OpenMP thread.  Output lines as vecbench's.

  faiss_peer.py hnsw BASE QUERIES GT K M EFC EF...
      IndexHNSWFlat(d, M), efConstruction EFC: build_s= peak_rss_kb=
      file_bytes= (write_index), then per EF: ef= recall= qps= qps_cpu=
      (all queries in one search call: no per-query Python overhead)
  faiss_peer.py flat BASE QUERIES GT K NQ
      IndexFlatL2, the first NQ queries one search call each (single-query
      throughput): queries= qps= qps_cpu= recall=
"""
import os
import resource
import sys
import tempfile
import time

import faiss
import numpy as np


def fvecs(path):
    raw = np.fromfile(path, dtype=np.int32)
    d = int(raw[0])
    return raw.reshape(-1, d + 1)[:, 1:].view(np.float32).copy()


def ivecs(path):
    raw = np.fromfile(path, dtype=np.int32)
    d = int(raw[0])
    return raw.reshape(-1, d + 1)[:, 1:]


def recall(found, gt, k):
    hits = 0
    for f, g in zip(found, gt):
        hits += len(set(f[:k].tolist()) & set(g[:k].tolist()))
    return hits / (k * len(gt))


def clocks():
    return time.monotonic(), time.thread_time()


def hnsw(base, queries, gtp, k, m, efc, efs):
    xb, xq, gt = fvecs(base), fvecs(queries), ivecs(gtp)
    w0, c0 = clocks()
    index = faiss.IndexHNSWFlat(xb.shape[1], m)
    index.hnsw.efConstruction = efc
    index.add(xb)
    w1, c1 = clocks()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(base))) as d:
        faiss.write_index(index, d + "/faiss.idx")
        size = os.path.getsize(d + "/faiss.idx")
    print("build_s=%.3f build_cpu_s=%.3f peak_rss_kb=%d file_bytes=%d"
          % (w1 - w0, c1 - c0, rss, size), flush=True)
    index.hnsw.efSearch = max(efs)
    index.search(xq, k)
    for ef in efs:
        index.hnsw.efSearch = ef
        w0, c0 = clocks()
        _, found = index.search(xq, k)
        w1, c1 = clocks()
        print("ef=%d recall=%.4f qps=%.1f qps_cpu=%.1f"
              % (ef, recall(found, gt, k), len(xq) / (w1 - w0),
                 len(xq) / (c1 - c0)), flush=True)


def flat(base, queries, gtp, k, nq):
    xb, xq, gt = fvecs(base), fvecs(queries)[:nq], ivecs(gtp)[:nq]
    index = faiss.IndexFlatL2(xb.shape[1])
    index.add(xb)
    found = []
    w0, c0 = clocks()
    for i in range(len(xq)):
        found.append(index.search(xq[i:i + 1], k)[1][0])
    w1, c1 = clocks()
    print("queries=%d qps=%.2f qps_cpu=%.2f recall=%.4f"
          % (len(xq), len(xq) / (w1 - w0), len(xq) / (c1 - c0),
             recall(found, gt, k)))


if __name__ == "__main__":
    faiss.omp_set_num_threads(1)
    a = sys.argv
    if len(a) >= 9 and a[1] == "hnsw":
        hnsw(a[2], a[3], a[4], int(a[5]), int(a[6]), int(a[7]),
             [int(x) for x in a[8:]])
    elif len(a) == 7 and a[1] == "flat":
        flat(a[2], a[3], a[4], int(a[5]), int(a[6]))
    else:
        sys.exit(__doc__)
