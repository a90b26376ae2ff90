#!/bin/sh
# build-rmi.sh - private build of the learned-index module, its unit test
# and its benchmark, outside the Makefile (which builds the whole library).
# Usage: bench/build-rmi.sh [CC]      output in bench/build/
set -eu
cd "$(dirname "$0")/.."
CC=${1:-${CC:-gcc}}
OUT=${OUT:-bench/build}
mkdir -p "$OUT"
WARN="-Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-missing-field-initializers -Wformat=2 -Wvla"
BASE="-std=c11 -O2 -g -D_GNU_SOURCE $WARN ${EXTRA_CFLAGS:-}"
cc() { echo "$CC $*"; $CC "$@"; }
cc $BASE -c libkyro/rmi.c -o $OUT/rmi.o
cc $BASE -c libkyro/rmi_build.c -o $OUT/rmi_build.o
cc $BASE -c libkyro/rmi_leaves.c -o $OUT/rmi_leaves.o
cc $BASE -c libkyro/simd.c -o $OUT/simd.o
cc $BASE -fno-tree-vectorize -c libkyro/simd_scalar.c -o $OUT/simd_scalar.o
cc $BASE -msse4.2 -mpopcnt -c libkyro/simd_sse4.c -o $OUT/simd_sse4.o
cc $BASE -mavx2 -mpopcnt -c libkyro/simd_avx2.c -o $OUT/simd_avx2.o
cc $BASE -mavx512f -mpopcnt -c libkyro/simd_avx512.c -o $OUT/simd_avx512.o
OBJS="$OUT/rmi.o $OUT/rmi_build.o $OUT/rmi_leaves.o $OUT/simd.o $OUT/simd_scalar.o $OUT/simd_sse4.o $OUT/simd_avx2.o $OUT/simd_avx512.o"
LIBS="-l:libcpu_features.a -lxxhash -lm -pthread"
if [ -f tests/unit/test_rmi.c ]; then
	cc $BASE -Ilibkyro tests/unit/test_rmi.c $OBJS $LIBS -o $OUT/test_rmi
fi
if [ -f bench/rmi_bench.c ]; then
	cc $BASE -O3 -Ilibkyro bench/rmi_bench.c $OBJS $LIBS -llmdb -lm -o $OUT/rmi_bench
fi
