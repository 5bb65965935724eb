#!/usr/bin/env bash
# dp train with the charge fitting on 1 process x 2 threads and on 2 Horovod ranks x 1 thread.
#
#   bash benchmarks/horovod_train.sh [WORKDIR]      (default /tmp/horovod_train)
#
# Needs Horovod built against the installed TensorFlow, with MPI (docs/large-systems.md says how:
# Horovod 0.28.1 builds against TensorFlow 2.21 only without its XLA ops). Converts the shipped Si8
# density, writes the recommended input (dp-charge input, 200 steps) and prints DeePMD-kit's
# "World Size" and average time per batch of each run; each rank trains on its own batch, so
# 2 ranks process twice the frames per step.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${1:-/tmp/horovod_train}"
mkdir -p "$work" && cd "$work"
dp-charge convert "$here/examples/silicon/dft/rattled_a/CHGCAR.gz" -o data --points 20000 --seed 0 --overwrite > /dev/null
dp-charge input data -o input.json --steps 200 > /dev/null
for run in "1 2" "2 1"; do
    set -- $run
    ranks=$1 threads=$2
    rm -rf "run$ranks" && mkdir "run$ranks" && cp input.json "run$ranks/" && cd "run$ranks"
    sed -i "s#\"$work/data\"#\"../data\"#; s#\"data\"#\"../data\"#" input.json
    if [ "$ranks" = 1 ]; then
        OMP_NUM_THREADS=$threads DP_INTRA_OP_PARALLELISM_THREADS=$threads DP_INTER_OP_PARALLELISM_THREADS=1 dp --tf train input.json > train.log 2>&1
    else
        OMP_NUM_THREADS=$threads DP_INTRA_OP_PARALLELISM_THREADS=$threads DP_INTER_OP_PARALLELISM_THREADS=1 mpirun -np "$ranks" dp --tf train input.json > train.log 2>&1
    fi
    echo "$ranks rank(s) x $threads thread(s): $(grep -o 'World Size: *[0-9]*' train.log | head -1 | tr -s ' ') ; $(grep -o 'average training time: [0-9.]* s/batch' train.log | tail -1); last lcurve line: $(tail -1 lcurve.out)"
    cd ..
done
