#!/usr/bin/python3
"""bench/vector/data.py - the benchmark's data sets as .fvecs files.

  data.py fashion DIR   Fashion-MNIST from Debian's dataset-fashion-mnist:
                        DIR/fashion-base.fvecs (the 60,000 training images)
                        and DIR/fashion-query.fvecs (the 10,000 test ones),
                        784 float32 pixel values 0..255 each, as in
                        ANN-Benchmarks' fashion-mnist-784-euclidean.
  data.py clustered DIR N D NQ SEED
                        DIR/clustered-base.fvecs (N vectors) and
                        DIR/clustered-query.fvecs (NQ), D dimensions: 1,000
                        centres uniform in [-1, 1]^D, each point a centre
                        plus gaussian noise of sd 0.15; seeded (numpy PCG64).
"""
import gzip
import sys

import numpy as np

SRC = "/usr/share/datasets/fashion-mnist"


def write_fvecs(path, x):
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    rows = np.empty((n, d + 1), dtype=np.float32)
    rows[:, 0] = np.array([d], dtype=np.int32).view(np.float32)[0]
    rows[:, 1:] = x
    rows.tofile(path)


def idx_images(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    n, r, c = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, r * c)


def fashion(out):
    write_fvecs(out + "/fashion-base.fvecs",
                idx_images(SRC + "/train-images-idx3-ubyte.gz"))
    write_fvecs(out + "/fashion-query.fvecs",
                idx_images(SRC + "/t10k-images-idx3-ubyte.gz"))


def clustered(out, n, d, nq, seed):
    rng = np.random.Generator(np.random.PCG64(seed))
    centres = rng.uniform(-1, 1, size=(1000, d)).astype(np.float32)

    def draw(m):
        x = np.empty((m, d), dtype=np.float32)
        step = 100000
        for i in range(0, m, step):
            j = min(m, i + step)
            c = rng.integers(0, len(centres), size=j - i)
            x[i:j] = centres[c] + rng.normal(0, 0.15, size=(j - i, d))
        return x
    write_fvecs(out + "/clustered-base.fvecs", draw(n))
    write_fvecs(out + "/clustered-query.fvecs", draw(nq))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "fashion":
        fashion(sys.argv[2])
    elif len(sys.argv) == 7 and sys.argv[1] == "clustered":
        clustered(sys.argv[2], *map(int, sys.argv[3:7]))
    else:
        sys.exit(__doc__)
