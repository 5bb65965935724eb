"""The kernel's dense-layer product and tanh alone, compiled stand-alone from table_sum.cc.

    python benchmarks/first_layer_tile.py [--flags "-march=native -mno-avx512fp16"]

Copies `gemm_tile` ... `tanh_rows` out of deepmd_charge/tf/table_sum.cc into a small C++ program,
builds it with the kernel's optimisation flags (-O3 -fopenmp-simd -fno-trapping-math) and the
given ones, and prints, on one core: GFMA/s of `first_layer` on a 560 x 64 layer (the speed
model's) for blocks of 24 and 23 rows, float64 and float32, with its largest difference from a
plain loop; and ns per value and the largest |tanh_v - std::tanh| on [-25, 25], float64 and float32. Used for docs/benchmarks.md section 3.
"""

import argparse
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "deepmd_charge" / "tf" / "table_sum.cc"

MAIN = r"""
template <typename T> void layer(const char* name, int64 P) {
  const int64 F = 560, N = 64;
  std::vector<T> f(P * F), W(F * N), b(N, T(0.1)), z(P * N);
  for (size_t i = 0; i < f.size(); ++i) f[i] = T(0.001) * (i % 7);
  for (size_t i = 0; i < W.size(); ++i) W[i] = T(0.5) - T(0.01) * (i % 5);
  double best = 1e9;
  for (int rep = 0; rep < 20; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    for (int it = 0; it < 1000; ++it) first_layer<T>(f.data(), P, F, W.data(), N, b.data(), z.data());
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  double err = 0;
  for (int64 r = 0; r < P; ++r)
    for (int64 n = 0; n < N; ++n) {
      double s = b[n];
      for (int64 k = 0; k < F; ++k) s += double(f[r * F + k]) * W[k * N + n];
      err = std::max(err, std::abs(s - z[r * N + n]));
    }
  printf("first_layer %s, %lld rows: %.1f GFMA/s, max |diff| from a plain loop %.1e\n", name, P,
         1000.0 * P * F * N / best / 1e9, err);
}

int main() {
  for (int64 P : {24, 23}) { layer<double>("float64", P); layer<float>("float32", P); }
  std::vector<double> z(24 * 64), z0(z.size());
  for (size_t i = 0; i < z.size(); ++i) z0[i] = -6.0 + 12.0 * i / z.size();
  double best = 1e9;
  for (int rep = 0; rep < 20; ++rep) {
    z = z0;
    auto t0 = std::chrono::steady_clock::now();
    for (int it = 0; it < 1000; ++it) tanh_rows<double>(z.data(), z.size());
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  double err = 0;
  for (double x = -25; x < 25; x += 1e-4) err = std::max(err, std::abs(tanh_v(x) - std::tanh(x)));
  printf("tanh_v: %.2f ns per value (float64), max |tanh_v - std::tanh| on [-25, 25] %.1e\n",
         best / 1000 / z.size() * 1e9, err);
  std::vector<float> y(z.size()), y0(z0.begin(), z0.end());
  best = 1e9;
  for (int rep = 0; rep < 20; ++rep) {
    y = y0;
    auto t0 = std::chrono::steady_clock::now();
    for (int it = 0; it < 1000; ++it) tanh_rows<float>(y.data(), y.size());
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  err = 0;
  for (double x = -25; x < 25; x += 1e-4) err = std::max(err, std::abs(double(tanh_v(float(x))) - std::tanh(double(float(x)))));
  printf("tanh_v: %.2f ns per value (float32), max |tanh_v - std::tanh| on [-25, 25] %.1e\n",
         best / 1000 / y.size() * 1e9, err);
}
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flags", default="-march=native -mno-avx512fp16")
    args = parser.parse_args()
    src = SOURCE.read_text()
    start = src.index("template <typename T, int RB, int CW>\ninline void gemm_tile")
    end = src.index("}  // namespace", start)
    includes = ("algorithm", "chrono", "cmath", "cstdint", "cstdio", "cstring", "vector")
    head = "".join(f"#include <{h}>\n" for h in includes) + "typedef long long int64;\n"
    with tempfile.TemporaryDirectory() as tmp:
        cc, exe = Path(tmp) / "tile.cc", Path(tmp) / "tile"
        cc.write_text(head + src[start:end] + MAIN)
        # capture: g++ warns about the remainder loops a 64-column layer never enters
        subprocess.run(
            ["g++", "-O3", "-fopenmp-simd", "-fno-trapping-math", *args.flags.split(), str(cc), "-o", str(exe)],
            check=True,
            capture_output=True,
        )
        print(f"flags: {args.flags}")
        print(subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout, end="")


if __name__ == "__main__":
    main()
