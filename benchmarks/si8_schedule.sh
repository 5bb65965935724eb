#!/usr/bin/env bash
# Learning-rate schedule on the README example: DeePMD-kit's smooth exp (what `dp-charge input`
# writes) against its cosine schedule, same ends (5e-3 -> 1e-5), 3000 steps, seeds 1 and 2, one
# thread per training. Trained on rattled_a, scored on rattled_b, perfect and the strained rattled_c
# (NMAE each). docs/benchmarks.md section 4 has the result.
#
#   bash benchmarks/si8_schedule.sh [WORKDIR]        # about 12 minutes on one core
set -euo pipefail
export OMP_NUM_THREADS=1 TF_INTRA_OP_PARALLELISM_THREADS=1 TF_INTER_OP_PARALLELISM_THREADS=1
export DP_INTRA_OP_PARALLELISM_THREADS=1 DP_INTER_OP_PARALLELISM_THREADS=1 TF_CPP_MIN_LOG_LEVEL=2
DFT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../examples/silicon/dft" && pwd)"
work="${1:-/tmp/si8_schedule}"
mkdir -p "$work" && cd "$work"
[ -d data ] || dp-charge convert "$DFT/rattled_a/CHGCAR.gz" -o data --seed 1 > /dev/null
echo "run: NMAE rattled_b / perfect / rattled_c"
for seed in 1 2; do
  for lr in exp cosine; do
    w="${lr}_seed$seed"
    mkdir -p "$w" && cd "$w"
    dp-charge input ../data -o input.json --steps 3000 --seed "$seed" > /dev/null
    if [ "$lr" = cosine ]; then  # same ends as the recipe's exp schedule
      python - <<'PY'
import json
d = json.load(open("input.json"))
d["learning_rate"] = {"type": "cosine", "start_lr": d["learning_rate"]["start_lr"], "stop_lr": d["learning_rate"]["stop_lr"]}
json.dump(d, open("input.json", "w"), indent=1)
PY
    fi
    dp --tf train input.json > train.log 2>&1
    dp --tf freeze -o model.pb > freeze.log 2>&1
    dp-charge test model.pb "$DFT"/{rattled_b,perfect,rattled_c}/CHGCAR.gz --json metrics.json --quiet > test.log 2>&1
    python -c "import json; m = json.load(open('metrics.json')); print('$w:', ' / '.join(f\"{100 * i['nmae']:.2f}%\" for i in m['inputs']))"
    cd ..
  done
done
