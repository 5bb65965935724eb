"""The kernel's table loop alone, compiled stand-alone from table_sum.cc.

    python benchmarks/table_loop.py [--flags "-march=native -mno-avx512fp16"] [--force-vector-form]

Copies `poly` ... `table_sum` out of deepmd_charge/tf/table_sum.cc into a small C++ program, builds
it with the kernel's optimisation flags and the given ones, and prints, on one core, microseconds
per point for the embedding's sums of the speed model (float32, 64 columns, 26 neighbours per point
drawn from a 534-row cubic table, 4 weights each): `table_sum` as the kernel calls it, and the plain
loop `table_block` with 8 and with 16 columns per pass; all three must give the same sums. Used for
docs/benchmarks.md section 3 (the 512-bit table sums): with AVX-512, `table_sum` takes the vector
form (`table_block_v`); without it, the plain 8-column loop. `--force-vector-form` makes
`table_sum` take the 64-byte vector form whatever the flags (to time it without AVX-512).
"""

import argparse
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "deepmd_charge" / "tf" / "table_sum.cc"

MAIN = r"""
#include <chrono>
#include <cstdio>
#include <random>
typedef void (*Sum)(const float*, int64, int64, const int64*, const float*, const float*, float*);
static void plain8(const float* c, int64 M, int64 nq, const int64* r, const float* t, const float* w, float* o) {
  for (int64 m0 = 0; m0 < M; m0 += 8) table_block<float, 4, 4, 8>(c, M, m0, nq, r, t, w, o);
}
static void plain16(const float* c, int64 M, int64 nq, const int64* r, const float* t, const float* w, float* o) {
  for (int64 m0 = 0; m0 < M; m0 += 16) table_block<float, 4, 4, 16>(c, M, m0, nq, r, t, w, o);
}
static void kernel(const float* c, int64 M, int64 nq, const int64* r, const float* t, const float* w, float* o) {
  table_sum<float, 4, 4>(c, M, nq, r, t, w, o);
}
int main() {
  const int64 M = 64, K = 534, nq = 26, P = 4096;
  std::vector<float> coef(K * 4 * M), ts(P * nq), w(P * nq * 4), out(4 * M), ref(4 * M * P);
  std::vector<int64> rows(P * nq);
  std::mt19937 g(1);
  for (auto& c : coef) c = std::uniform_real_distribution<float>(-1, 1)(g);
  for (auto& r : rows) r = std::uniform_int_distribution<int>(0, K - 1)(g);
  for (auto& t : ts) t = std::uniform_real_distribution<float>(0, 1.0f / 64)(g);
  for (auto& x : w) x = std::uniform_real_distribution<float>(-1, 1)(g);
  const char* names[] = {"table_sum (as the kernel calls it)", "plain loop, 8 columns per pass", "plain loop, 16 columns per pass"};
  Sum sums[] = {kernel, plain8, plain16};
  for (int s = 0; s < 3; ++s) {
    double best = 1e9, diff = 0;
    for (int64 p = 0; p < P; ++p) {  // the sums, checked once, outside the timing
      sums[s](coef.data(), M, nq, rows.data() + p * nq, ts.data() + p * nq, w.data() + p * nq * 4, out.data());
      for (int64 i = 0; i < 4 * M; ++i) {
        if (s == 0) ref[p * 4 * M + i] = out[i];
        diff = std::max(diff, double(std::abs(out[i] - ref[p * 4 * M + i])));
      }
    }
    float sink = 0;
    for (int rep = 0; rep < 30; ++rep) {
      auto t0 = std::chrono::steady_clock::now();
      for (int64 p = 0; p < P; ++p) {
        sums[s](coef.data(), M, nq, rows.data() + p * nq, ts.data() + p * nq, w.data() + p * nq * 4, out.data());
        sink += out[p % (4 * M)];
      }
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    if (sink == 12345.678f) printf(" ");  // keeps the timed sums from being optimised away
    printf("%s: %.3f us per point (max |diff| from table_sum %.1e)\n", names[s], best / P * 1e6, diff);
  }
}
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flags", default="-march=native -mno-avx512fp16")
    parser.add_argument("--force-vector-form", action="store_true")
    args = parser.parse_args()
    src = SOURCE.read_text()
    start = src.index("#ifdef __AVX512F__\nconstexpr int kVectorBytes")
    end = src.index("// z[r, n] = b[n]", start)
    code = src[start:end]
    if args.force_vector_form:
        code = code.replace("#ifdef __AVX512F__", "#if 1").replace("kVectorBytes = 32", "kVectorBytes = 64")
    includes = ("algorithm", "cmath", "cstdint", "cstring", "vector")
    head = "".join(f"#include <{h}>\n" for h in includes) + "typedef long long int64;\n"
    with tempfile.TemporaryDirectory() as tmp:
        cc, exe = Path(tmp) / "table.cc", Path(tmp) / "table"
        cc.write_text(head + code + MAIN)
        subprocess.run(
            ["g++", "-O3", "-fopenmp-simd", "-fno-trapping-math", *args.flags.split(), str(cc), "-o", str(exe)],
            check=True,
            capture_output=True,
        )
        print(f"flags: {args.flags}" + (", vector form forced" if args.force_vector_form else ""))
        print(subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout, end="")


if __name__ == "__main__":
    main()
