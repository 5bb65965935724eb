"""A model trained on one DFT code scored against another code's density of the same structures.

    bash examples/silicon/run.sh                       # the GPAW-trained model: examples/silicon/work/model.pb
    python examples/silicon/make_data_qe.py            # Quantum ESPRESSO densities in /tmp/qe_si8
    python benchmarks/cross_code.py [--model M] [--qe /tmp/qe_si8]

Prints, for each reference, the NMAE within 0.5 A of a nucleus and elsewhere (what `dp-charge
test` warns about: deepmd_charge.evaluate.reference_warnings), the electron counts and the
warnings. The thresholds in deepmd_charge/evaluate.py and the numbers in docs/theory.md come
from this table.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DFT = ROOT / "examples" / "silicon" / "dft"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "examples" / "silicon" / "work" / "model.pb"))
    parser.add_argument("--qe", default="/tmp/qe_si8", help="output folder of examples/silicon/make_data_qe.py")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from deepmd_charge import DeepCharge
    from deepmd_charge.evaluate import evaluate_volumetric, reference_warnings

    dc = DeepCharge(args.model)
    refs = [("GPAW", DFT / name / "CHGCAR.gz") for name in ("rattled_b", "perfect", "rattled_c")]
    refs += [("QE", Path(args.qe) / name / "CHGCAR.gz") for name in ("perfect", "rattled_1", "rattled_2", "rattled_3")]
    print(f"model {args.model} (trained on GPAW rattled_a)")
    print(
        f"{'code':5s} {'reference':28s} {'NMAE':>7s} {'near nuclei':>12s} {'elsewhere':>10s} {'ratio':>6s} "
        f"{'R^2':>7s}  electrons pred/DFT  warnings"
    )
    for code, path in refs:
        if not path.exists():
            print(f"{code:5s} {path}: missing")
            continue
        result = evaluate_volumetric(dc, path)
        warnings = reference_warnings(result)
        m = result["metrics"]
        near, far = m["nmae_near_nuclei"], m["nmae_elsewhere"]
        print(
            f"{code:5s} {path.parent.name:28s} {100 * m['nmae']:6.2f}% {100 * near:11.1f}% {100 * far:9.2f}% "
            f"{near / far:6.1f} {m['r2']:7.4f}  "
            f"{m['electrons_pred']:.3f}/{m['electrons_ref']:.3f}  {len(warnings)}"
        )


if __name__ == "__main__":
    main()
