// Why table_sum.cc stores its coefficients power by power: the inner loop of a tabulated
// embedding sum, out[c][m] += w[c] * poly_m(x), over 64 columns for 8192 points x 41 slots
// (27 real neighbours, then padding), with the coefficients stored column by column (6 per
// column, DeePMD-kit's TabulateFusionSeA layout: "aos") or power by power ("soa", ours).
// One thread, no TensorFlow. Random tables: only the speed means something.
//
//   g++ -O3 -march=native -fopenmp-simd benchmarks/table_layout.cc -o /tmp/table_layout && /tmp/table_layout
#include <vector>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
template <typename F>
void aos(F* out, const F* table, const F* em_x, const F* em, int nloc, int nnei, int M, F lower, F stride) {
  memset(out, 0, sizeof(F) * nloc * 4 * M);
  for (int ii = 0; ii < nloc; ii++) {
    F ago = em_x[ii * nnei + nnei - 1]; bool unloop = false;
    for (int jj = 0; jj < nnei; jj++) {
      F ll[4] = {em[ii*nnei*4+jj*4], em[ii*nnei*4+jj*4+1], em[ii*nnei*4+jj*4+2], em[ii*nnei*4+jj*4+3]};
      F xx = em_x[ii*nnei+jj]; if (ago == xx) unloop = true;
      int idx = (int)((xx - lower) / stride); xx -= idx * stride + lower;
      for (int kk = 0; kk < M; kk++) {
        const F* a = table + idx * M * 6 + 6 * kk;
        F var = a[0] + (a[1] + (a[2] + (a[3] + (a[4] + a[5] * xx) * xx) * xx) * xx) * xx;
        F m = unloop ? (F)(nnei - jj) : (F)1;
        out[ii*M*4 + 0*M + kk] += m * var * ll[0];
        out[ii*M*4 + 1*M + kk] += m * var * ll[1];
        out[ii*M*4 + 2*M + kk] += m * var * ll[2];
        out[ii*M*4 + 3*M + kk] += m * var * ll[3];
      }
      if (unloop) break;
    }
  }
}
// SoA: table[idx][p][kk]; accumulate in local buffer
template <typename F>
void soa(F* out, const F* table, const F* em_x, const F* em, int nloc, int nnei, int M, F lower, F stride) {
  std::vector<F> acc(4 * M);
  for (int ii = 0; ii < nloc; ii++) {
    std::fill(acc.begin(), acc.end(), (F)0);
    F ago = em_x[ii * nnei + nnei - 1];
    for (int jj = 0; jj < nnei; jj++) {
      const F* e = em + ii*nnei*4 + jj*4;
      F xx = em_x[ii*nnei+jj]; F mult = 1; bool unloop = ago == xx; if (unloop) mult = nnei - jj;
      int idx = (int)((xx - lower) / stride); xx -= idx * stride + lower;
      const F* a = table + (size_t)idx * M * 6;
      F l0 = e[0]*mult, l1 = e[1]*mult, l2 = e[2]*mult, l3 = e[3]*mult;
      F* __restrict a0 = acc.data(); F* __restrict a1 = a0 + M; F* __restrict a2 = a1 + M; F* __restrict a3 = a2 + M;
#pragma omp simd
      for (int kk = 0; kk < M; kk++) {
        F var = a[kk] + (a[M+kk] + (a[2*M+kk] + (a[3*M+kk] + (a[4*M+kk] + a[5*M+kk] * xx) * xx) * xx) * xx) * xx;
        a0[kk] += var * l0; a1[kk] += var * l1; a2[kk] += var * l2; a3[kk] += var * l3;
      }
      if (unloop) break;
    }
    memcpy(out + ii*4*M, acc.data(), sizeof(F)*4*M);
  }
}
template <typename F> void run(const char* name) {
  int nloc = 8192, nnei = 41, M = 64, ntab = 4000; F lower = 0, stride = 0.01;
  std::mt19937 g(0); std::uniform_real_distribution<double> u(0, 1);
  std::vector<F> table(ntab * 6 * M), em_x(nloc * nnei), em(nloc * nnei * 4), out(nloc * 4 * M);
  for (auto& t : table) t = u(g);
  for (int i = 0; i < nloc; i++) for (int j = 0; j < nnei; j++) {
    F x = j < 27 ? u(g) * 39 : 39.5; em_x[i*nnei+j] = x;
    for (int c = 0; c < 4; c++) em[(i*nnei+j)*4+c] = j < 27 ? u(g) : (c ? 0 : 0.3);
  }
  for (int rep = 0; rep < 2; rep++) {
    auto t0 = std::chrono::steady_clock::now();
    aos(out.data(), table.data(), em_x.data(), em.data(), nloc, nnei, M, lower, stride);
    auto t1 = std::chrono::steady_clock::now();
    soa(out.data(), table.data(), em_x.data(), em.data(), nloc, nnei, M, lower, stride);
    auto t2 = std::chrono::steady_clock::now();
    printf("%s aos %.0f pts/s  soa %.0f pts/s\n", name, nloc / std::chrono::duration<double>(t1 - t0).count(), nloc / std::chrono::duration<double>(t2 - t1).count());
  }
}
int main() { run<double>("f64"); run<float>("f32"); }
