#!/usr/bin/env bash
# convert -> train -> freeze -> predict -> test on 8-atom silicon (GPAW PBE densities in dft/).
# Trains on ONE rattled structure (dft/rattled_a) and scores structures it has never seen.
# About 2 minutes on 2 CPU cores (2.0 min measured by benchmarks/time_example.py on a quiet 2-core
# AMD EPYC; NMAE 1.22% on rattled_b). Everything it makes goes to examples/silicon/work/;
# running it again replaces it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$here/work"
cd "$here/work"
export TF_CPP_MIN_LOG_LEVEL=2

echo "== 1. convert: DFT grid -> ghost-point frames"
dp-charge convert ../dft/rattled_a/CHGCAR.gz -o data --seed 1 --overwrite

echo "== 2. write the recommended input, train (3000 steps) and freeze"
dp-charge input data -o input.json --steps 3000
dp --tf train input.json > train.log 2>&1 || { tail -20 train.log; exit 1; }
tail -n 3 lcurve.out
dp --tf freeze -o model.pb > freeze.log 2>&1 || { tail -20 freeze.log; exit 1; }

echo "== 3. predict the density of an unseen structure from its POSCAR"
dp-charge predict model.pb ../dft/rattled_b/POSCAR -o CHGCAR_rattled_b --like ../dft/rattled_b/CHGCAR.gz --quiet

echo "== 4. test against DFT (unseen: rattled_b, perfect, rattled_c = +2% strain and larger rattle)"
dp-charge test model.pb ../dft/rattled_b/CHGCAR.gz ../dft/perfect/CHGCAR.gz ../dft/rattled_c/CHGCAR.gz \
    --json metrics.json --plot parity.png --slice slice_rattled_b.png --slice-at 1.36 --diff diff.vasp --quiet
echo "open work/CHGCAR_rattled_b and work/diff_0000.vasp (model - DFT) in VESTA; pictures: work/parity.png, work/slice_rattled_b.png"
