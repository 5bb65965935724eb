// ChargeDescriptor: a charge model's whole per-neighbour part, from DeePMD-kit's environment-op
// outputs (em, rij, nlist) to the fitting net's inputs, with the networks read from piecewise
// cubic (or quintic) tables (deepmd_charge/tf/tabulate.py builds them):
//
//   T[c, m]  = sum_j em[j, c] G_e(j)(x_j)_m  (+ x_pad G_e(x_pad) per empty slot, as se_e2_a does)
//   D[m, a]  = sum_c T[c, m] T[c, a] / nnei^2,   a < axis          (se_e2_a's descriptor)
//   R[m]     = sum_j s_j g_e(j)(x_j)_m / nnei,   s_j = x_j std + avg   (the learned radial sums)
//   B[e, k]  = sum_{j of element e} phi_k(r_j)                     (the radial-basis sums)
//
// with x_j = em[j, 0] and j over the real neighbours (nlist >= 0) of each point. The fitting
// net's input row [D, (B - mean) / std, R] (deepmd_charge/tf/fitting.py's order) is written
// directly, and so are the model's two linear paths, R . w_radial and B . w_basis. Given the
// fitting net's first layer (w0, b0), the rows of a few points at a time stay in a per-thread
// buffer and the op writes that layer's pre-activation row . w0 + b0 instead (first_layer below);
// given the rest of a tanh fitting net too (tail, tail_params), it writes the net's output.
//
// Why one fused op: as one small op per table plus TensorFlow glue (casts of em to the table
// precision, r from rij, padding counts, a batched 4 x M x axis matmul, a concat of the fitting
// net's input in float64), the glue cost more op time than the tables themselves (profile of the
// Si64 float32 speed model, 64^3 grid: 760 ms of glue against 440 ms of table sums, next to 630 ms
// for the environment op); docs/benchmarks.md section 3 has the before/after throughput.
//
// Why our own table layout beside DeePMD-kit's TabulateFusionSeA (which computes T for one
// table): its coefficients are stored column by column (6 per column), which keeps the compiler
// from vectorising over columns. Here they are stored power by power ([K, 6, M]), so the inner
// loop over columns is a plain SIMD loop. Measured by benchmarks/table_layout.cc on this project's
// 2-core Xeon (AVX-512), one thread, 64 columns, 27 real neighbours of 41 slots: 1.23M points/s
// (float32) and 310k (float64) against 236k and 176k for the column-by-column layout.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/util/work_sharder.h"

using namespace tensorflow;

// Per-table row of the info inputs: lower, upper, max, stride below upper, stride above it,
// first row of this table in the stacked coefficients, rows below upper, rows in all,
// and (embedding / radial tables) avg, std of s: s = x std + avg.
constexpr int kInfo = 10;

REGISTER_OP("ChargeDescriptor")
    .Attr("T: {float, double}")  // table and output precision
    .Attr("E: {float, double}")  // environment-op precision
    .Attr("sel: list(int)")      // neighbour slots of each real element, in slot order
    .Attr("axis: int")
    .Attr("tail: list(int) = []")       // fused tail: widths of the hidden layers after the first
    .Attr("tail_residual: list(int) = []")  // 0: h = tanh(z); 1: h += idt * tanh(z) (idt 1 without resnet_dt)
    .Input("em: E")          // [P, nnei * 4] normalised environment matrix
    .Input("rij: E")         // [P, nnei * 3] (read only with a radial basis)
    .Input("nlist: int32")   // [P, nnei], < 0 for an empty slot
    .Input("g_coef: T")      // [Kg, C, M] embedding tables of all elements, stacked (C = 4 or 6 coefficients)
    .Input("g_info: T")      // [n, kInfo]; the radial tables share these rows
    .Input("g_pad: T")       // [n, M] x_pad G_e(x_pad): what one empty slot adds to T[0]
    .Input("r_coef: T")      // [Kg, C, Mr] radial-net tables (Mr = 0: none)
    .Input("b_coef: T")      // [Kb, C, Nb] radial-basis table on r (Nb = 0: none)
    .Input("b_info: T")      // [kInfo]
    .Input("b_mean: T")      // [n * Nb] the fitting net's standardisation of B
    .Input("b_std: T")       // [n * Nb]
    .Input("lin_w: double")  // [Mr + n * Nb] weights of the linear paths
    .Input("w0: T")          // [F, N0] the fitting net's first layer (N0 = 0: not fused)
    .Input("b0: T")          // [N0]
    .Input("tail_params: T") // with tail: per hidden layer W, b, idt, then the output layer's w, b
    .Output("features: T")   // [P, F], F = M * axis + n * Nb + Mr: the fitting net's input;
                             // fused (N0 > 0): [P, N0], its first layer before the activation;
                             // with a fused tail (tail_params not empty): [P, 1], the net's output
    .Output("linear: double")  // [P, 2] R . w_radial, B . w_basis
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      std::vector<int> sel;
      int axis;
      TF_RETURN_IF_ERROR(c->GetAttr("sel", &sel));
      TF_RETURN_IF_ERROR(c->GetAttr("axis", &axis));
      auto P = c->Dim(c->input(0), 0);
      auto M = c->Dim(c->input(3), 2), Mr = c->Dim(c->input(6), 2), Nb = c->Dim(c->input(7), 2);
      shape_inference::DimensionHandle d, b, f;
      TF_RETURN_IF_ERROR(c->Multiply(M, axis, &d));
      TF_RETURN_IF_ERROR(c->Multiply(Nb, static_cast<int64_t>(sel.size()), &b));
      TF_RETURN_IF_ERROR(c->Add(d, b, &f));
      TF_RETURN_IF_ERROR(c->Add(f, Mr, &f));
      auto N0 = c->Dim(c->input(12), 1);
      if (c->ValueKnown(N0) && c->Value(N0) > 0) f = N0;
      auto nt = c->Dim(c->input(14), 0);
      if (c->ValueKnown(nt) && c->Value(nt) > 0) f = c->MakeDim(1);
      c->set_output(0, c->MakeShape({P, f}));
      c->set_output(1, c->MakeShape({P, 2}));
      return OkStatus();
    });

namespace {

template <typename T>
struct Locator {
  T lower, upper, top, h0, h1, inv0, inv1;  // strides are powers of two: x * inv is x / h exactly
  int64 row0, n0, rows;
  explicit Locator(const T* inf)
      : lower(inf[0]), upper(inf[1]), top(inf[2]), h0(inf[3]), h1(inf[4]), inv0(T(1) / inf[3]), inv1(T(1) / inf[4]),
        row0(static_cast<int64>(inf[5])), n0(static_cast<int64>(inf[6])), rows(static_cast<int64>(inf[7])) {}
  // row of the stacked table and offset t = x - x_row (x clamped to the table's range)
  inline int64 operator()(T x, T* t) const {
    int64 k;
    // !(x >= lower) also catches a NaN x (a grid point on a nucleus, replaced later by predict.py):
    // with x < lower it reached the last branch and cast NaN to an int64 row far out of the table
    if (!(x >= lower)) {
      k = 0;
      *t = 0;
    } else if (x < upper) {
      k = std::min<int64>(static_cast<int64>((x - lower) * inv0), n0 - 1);
      *t = x - (lower + k * h0);
    } else {
      k = std::min<int64>(n0 + static_cast<int64>((x - upper) * inv1), rows - 1);
      *t = std::min(x, top) - (upper + (k - n0) * h1);
    }
    return row0 + k;
  }
};

#ifdef __AVX512F__
constexpr int kVectorBytes = 64;
#else
constexpr int kVectorBytes = 32;
#endif

// out[r, m] = sum_q w[q, r] F_m(x_q), F the table (rows[q], offset t[q]), m < M, r < R.
// Column blocks of W: the R x W sums stay in registers while the neighbours stream by, so each
// neighbour costs C coefficient loads and C - 1 + R FMAs per column (against loads and stores of
// the sums and of F(x) when neighbour-major: 1.32x (float32) / 1.35x (float64) the op time).
template <typename T, int C>
inline T poly(const T* __restrict a, int64 M, int i, T t, T t2) {
  // Estrin's scheme: as many FMAs as Horner's, fewer dependent ones (the chain's latency, not the
  // FMA count, bounds this loop: kernel time -5 to -14 % with quintics, float64, benchmarks/kernel_alone.py)
  if constexpr (C == 4) {
    return (a[i] + t * a[M + i]) + t2 * (a[2 * M + i] + t * a[3 * M + i]);
  } else {
    return (a[i] + t * a[M + i]) + t2 * ((a[2 * M + i] + t * a[3 * M + i]) + t2 * (a[4 * M + i] + t * a[5 * M + i]));
  }
}

template <typename T, int C, int R, int W>
inline void table_block(const T* __restrict coef, int64 M, int64 m0, int64 nq, const int64* rows, const T* ts,
                        const T* w, T* __restrict out) {
  T acc[R][W] = {};
  for (int64 q = 0; q < nq; ++q) {
    const T* __restrict a = coef + rows[q] * C * M + m0;
    const T t = ts[q], t2 = t * t;
    T wq[R];
    for (int r = 0; r < R; ++r) wq[r] = w[q * R + r];
#pragma omp simd
    for (int i = 0; i < W; ++i) {
      const T v = poly<T, C>(a, M, i, t, t2);
      for (int r = 0; r < R; ++r) acc[r][i] += wq[r] * v;
    }
  }
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < W; ++i) out[r * M + m0 + i] = acc[r][i];
}

#ifdef __AVX512F__
// The same sums on one 64-byte vector of columns, written with GCC's vector extension. g++ keeps
// the plain loops above at 256 bits on these CPUs (and 16 columns of them ran 3.3x slower than 8:
// a scalar fallback); this form uses the 512-bit registers. The embedding's table loop alone, one
// core, 26 neighbours of a 534-row table, 64 columns, float32: 0.375 against 0.503 us per point
// (benchmarks/table_loop.py); with AVX2 the same form split into halves was 7x slower, hence AVX-512 only.
// The whole float32 kernel (speed model, benchmarks/kernel_alone.py): 0.664-0.670 against
// 0.747-0.750 us per point; float64 unchanged (1.26-1.27).
template <typename T, int C, int R>
inline void table_block_v(const T* __restrict coef, int64 M, int64 m0, int64 nq, const int64* rows, const T* ts,
                          const T* w, T* __restrict out) {
  typedef T V __attribute__((vector_size(kVectorBytes)));
  V acc[R];
  for (int r = 0; r < R; ++r) acc[r] = V{};
  for (int64 q = 0; q < nq; ++q) {
    const T* a = coef + rows[q] * C * M + m0;
    const T t = ts[q], t2 = t * t;
    V c[C];
    for (int k = 0; k < C; ++k) std::memcpy(&c[k], a + k * M, kVectorBytes);
    V v;
    if constexpr (C == 4)
      v = (c[0] + t * c[1]) + t2 * (c[2] + t * c[3]);
    else
      v = (c[0] + t * c[1]) + t2 * ((c[2] + t * c[3]) + t2 * (c[4] + t * c[5]));
    for (int r = 0; r < R; ++r) acc[r] += w[q * R + r] * v;
  }
  for (int r = 0; r < R; ++r) std::memcpy(out + r * M + m0, &acc[r], kVectorBytes);
}
#endif

template <typename T, int C, int R>
inline void table_sum(const T* coef, int64 M, int64 nq, const int64* rows, const T* ts, const T* w, T* out) {
  // 8 columns for the embedding (R = 4), the fastest width tried in both precisions (op time, Si64
  // speed models, 64^3 grid: float32 8 / 16 columns 262 / 470 ms; float64 4 / 8 / 16 columns
  // 496 / 385 / 664 ms); 16 for the single sums (R = 1), two independent chains per neighbour
  // (float32 kernel time -6 %, benchmarks/kernel_alone.py)
  constexpr int W = R == 1 ? 16 : 8;
  int64 m0 = 0;
#ifdef __AVX512F__
  // the embedding's sums only: for the single sums (R = 1) the vector form was the same in float32
  // and 4 % slower in float64 (whole kernel, benchmarks/kernel_alone.py, alternating builds)
  constexpr int L = kVectorBytes / sizeof(T);
  if constexpr (R == 4)
    for (; m0 + L <= M; m0 += L) table_block_v<T, C, R>(coef, M, m0, nq, rows, ts, w, out);
#endif
  for (; m0 + W <= M; m0 += W) table_block<T, C, R, W>(coef, M, m0, nq, rows, ts, w, out);
  for (; m0 + 8 <= M; m0 += 8) table_block<T, C, R, 8>(coef, M, m0, nq, rows, ts, w, out);
  for (; m0 < M; ++m0) table_block<T, C, R, 1>(coef, M, m0, nq, rows, ts, w, out);
}

// z[r, n] = b[n] + sum_k f[r, k] W[k, n] for the rows of one block of points (f [nr, F], W [F, N],
// z [nr, N], all row-major). Register tiles of RB rows x CW columns over k chunks of KC rows of W,
// which stay in cache while all the block's rows pass.
// Why our own product instead of TensorFlow's MatMul on the feature rows: in float64 TensorFlow's
// matmul (Eigen, built for the wheel's baseline ISA) ran the speed model's 16,384 x 560 x 64 product
// at about 52 GFLOP/s on the 2-core Xeon (AVX-512), and the feature rows (4.5 KB per point) made a round
// trip through memory; docs/benchmarks.md section 3 has the measurement.
template <typename T, int RB, int CW>
inline void gemm_tile(const T* __restrict f, int64 F, const T* __restrict W, int64 N, int64 k0, int64 k1, int64 n0,
                      bool first, const T* __restrict b, T* __restrict z) {
  T acc[RB][CW];
  for (int r = 0; r < RB; ++r)
    for (int i = 0; i < CW; ++i) acc[r][i] = first ? b[n0 + i] : z[r * N + n0 + i];
  for (int64 k = k0; k < k1; ++k) {
    const T* __restrict w = W + k * N + n0;
    for (int r = 0; r < RB; ++r) {
      const T fr = f[r * F + k];
#pragma omp simd
      for (int i = 0; i < CW; ++i) acc[r][i] += fr * w[i];
    }
  }
  for (int r = 0; r < RB; ++r)
    for (int i = 0; i < CW; ++i) z[r * N + n0 + i] = acc[r][i];
}

template <typename T, int RB, int CW>
inline void gemm_cols(const T* f, int64 F, const T* W, int64 N, int64 k0, int64 k1, bool first, const T* b, T* z) {
  int64 n0 = 0;
  for (; n0 + CW <= N; n0 += CW) gemm_tile<T, RB, CW>(f, F, W, N, k0, k1, n0, first, b, z);
  for (; n0 + 8 <= N; n0 += 8) gemm_tile<T, RB, 8>(f, F, W, N, k0, k1, n0, first, b, z);
  for (; n0 < N; ++n0) gemm_tile<T, RB, 1>(f, F, W, N, k0, k1, n0, first, b, z);
}

// Register tile: 6 rows x 4 vectors of columns with AVX-512 (24 of its 32 registers), 6 rows x 2
// vectors elsewhere (AVX2 has 16). Measured on the Xeon (one core, 560 x 64 layer, rows of 24 points):
// float64 45.5 GFMA/s with 6 x 32 against 34.2 with 4 x 32 and 41.5 with 8 x 16; float32 100 GFMA/s.
constexpr int kVectors = kVectorBytes == 64 ? 4 : 2;
constexpr int64 kTileRows = 6;

template <typename T>
void first_layer(const T* f, int64 nr, int64 F, const T* W, int64 N, const T* b, T* z) {
  constexpr int CW = kVectors * kVectorBytes / sizeof(T);
  constexpr int64 KC = 128;  // W's rows per pass: 128 x 64 x 4 B = 32 KB (float32) stays in L1
  for (int64 k0 = 0; k0 < F; k0 += KC) {
    const int64 k1 = std::min(F, k0 + KC);
    int64 r = 0;
    for (; r + kTileRows <= nr; r += kTileRows) gemm_cols<T, kTileRows, CW>(f + r * F, F, W, N, k0, k1, k0 == 0, b, z + r * N);
    for (; r + 2 <= nr; r += 2) gemm_cols<T, 2, CW>(f + r * F, F, W, N, k0, k1, k0 == 0, b, z + r * N);
    for (; r < nr; ++r) gemm_cols<T, 1, CW>(f + r * F, F, W, N, k0, k1, k0 == 0, b, z + r * N);
  }
}

// exp(x) by its Taylor polynomial of degree D, Horner's scheme (a fully unrolled loop)
template <typename T, int D>
inline T exp_taylor(T x) {
  T fact = 1;
  for (int k = 2; k <= D; ++k) fact *= T(k);
  T e = T(1) / fact;  // 1 / D!
  for (int k = D; k >= 1; --k) {
    fact /= T(k);
    e = e * x + T(1) / fact;  // 1 / (k - 1)!
  }
  return e;
}

// tanh in plain arithmetic that the compiler vectorises (std::tanh is a scalar call without
// -ffast-math). float64: tanh(x) = sign(x) (1 - e) / (1 + e) with e = exp(-2|x|) =
// exp(-2|x| / 256)^256, a Taylor polynomial of degree 11 on [-0.149, 0] (|x| clamped at 19, where
// tanh is 1 in float64) and eight squarings. Absolute error 1.2e-14 against std::tanh on [-25, 25]
// (benchmarks/first_layer_tile.py); the density stays the plain graph's to 1e-10 (tests).
inline double tanh_v(double x) {
  const double a = std::min(std::fabs(x), 19.0), z = a * (-2.0 / 256.0);
  double e = exp_taylor<double, 11>(z);
  for (int i = 0; i < 8; ++i) e *= e;
  const double t = (1.0 - e) / (1.0 + e);
  return std::copysign(t, x);
}

// float32 (the float32 net's activations): e = 2^k exp(r) with k = round(-2|x| log2 e), |r| <= ln2 / 2,
// exp(r) by its Taylor polynomial of degree 7 (truncation 5e-9), |x| clamped at 9 (tanh is 1 in
// float32 there). Adding the 1.5 * 2^23 shifter rounds to an integer and leaves k in the low bits;
// that needs IEEE arithmetic as written (no -ffast-math, which the kernel is not built with).
// Absolute error below 1.1e-7 against std::tanh on [-25, 25], 0.21 ns per value on one Xeon core
// against 0.59 for the float64 one (benchmarks/first_layer_tile.py).
inline float tanh_v(float x) {
  const float a = std::min(std::fabs(x), 9.0f), y = a * -2.88539008f;  // -2|x| log2(e)
  const float shifter = 12582912.0f, kr = y + shifter, k = kr - shifter;
  const float r = (y - k) * 0.693147181f;
  float e = exp_taylor<float, 7>(r);
  int32_t bits;
  std::memcpy(&bits, &kr, sizeof bits);
  const int32_t pow2 = (bits - 0x4B400000 + 127) << 23;  // 2^k, k in [-26, 0]
  float scale;
  std::memcpy(&scale, &pow2, sizeof scale);
  e *= scale;
  const float t = (1.0f - e) / (1.0f + e);
  return std::copysign(t, x);
}

template <typename T>
inline void tanh_rows(T* __restrict z, int64 n) {
#pragma omp simd
  for (int64 i = 0; i < n; ++i) z[i] = tanh_v(z[i]);
}

}  // namespace

template <typename T, typename E>
class ChargeDescriptorOp : public OpKernel {
 public:
  explicit ChargeDescriptorOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("sel", &sel_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("axis", &axis_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("tail", &tail_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("tail_residual", &tail_residual_));
    OP_REQUIRES(ctx, tail_.size() == tail_residual_.size(), errors::InvalidArgument("tail and tail_residual differ in length"));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor &em = ctx->input(0), &rij = ctx->input(1), &nlist = ctx->input(2);
    const Tensor &g_coef = ctx->input(3), &g_info = ctx->input(4), &g_pad = ctx->input(5);
    const Tensor &r_coef = ctx->input(6), &b_coef = ctx->input(7), &b_info = ctx->input(8);
    const Tensor &b_mean = ctx->input(9), &b_std = ctx->input(10), &lin_w = ctx->input(11);
    const Tensor &w0 = ctx->input(12), &b0 = ctx->input(13), &tail_params = ctx->input(14);
    const int64 n = sel_.size();
    OP_REQUIRES(ctx, em.dims() == 2 && rij.dims() == 2 && nlist.dims() == 2, errors::InvalidArgument("em, rij, nlist must be [P, ...]"));
    const int64 P = nlist.dim_size(0), nnei = nlist.dim_size(1);
    OP_REQUIRES(ctx, em.dim_size(0) == P && em.dim_size(1) == 4 * nnei,
                errors::InvalidArgument("em [P, 4 nnei] and nlist [P, nnei] disagree"));
    int64 nsel = 0;
    for (int s : sel_) nsel += s;
    OP_REQUIRES(ctx, nsel <= nnei, errors::InvalidArgument("sel has more slots than nlist"));
    const int64 C = g_coef.dims() == 3 ? g_coef.dim_size(1) : 0;
    for (const Tensor* c : {&g_coef, &r_coef, &b_coef})
      OP_REQUIRES(ctx, c->dims() == 3 && c->dim_size(1) == C && (C == 4 || C == 6),
                  errors::InvalidArgument("tables must be [K, C, M] with the same C, 4 or 6"));
    const int64 M = g_coef.dim_size(2), Mr = r_coef.dim_size(2), Nb = b_coef.dim_size(2);
    OP_REQUIRES(ctx, Nb == 0 || (rij.dim_size(0) == P && rij.dim_size(1) == 3 * nnei),
                errors::InvalidArgument("rij must be [P, 3 nnei] with a radial basis"));
    OP_REQUIRES(ctx, M >= axis_ && g_info.NumElements() == n * kInfo && g_pad.NumElements() == n * M && b_info.NumElements() == kInfo &&
                    b_mean.NumElements() == n * Nb && b_std.NumElements() == n * Nb && lin_w.NumElements() == Mr + n * Nb,
                errors::InvalidArgument("table info does not match sel and the tables"));
    OP_REQUIRES(ctx, Mr == 0 || r_coef.dim_size(0) == g_coef.dim_size(0), errors::InvalidArgument("radial tables must share the embedding rows"));
    Tensor *d_out = nullptr, *l_out = nullptr;
    const int64 F = M * axis_ + n * Nb + Mr;
    const int64 N0 = w0.dims() == 2 ? w0.dim_size(1) : 0;
    OP_REQUIRES(ctx, N0 == 0 || (w0.dim_size(0) == F && b0.NumElements() == N0),
                errors::InvalidArgument("w0 must be [F, N0] and b0 [N0] with F the feature width"));
    // the fused tail's parameters: per hidden layer W [Nin, Nout], b, idt [Nout]; then w [Nlast], b
    int64 nparam = 0, width = N0, wmax = N0;
    for (size_t l = 0; l < tail_.size(); ++l) {
      OP_REQUIRES(ctx, !tail_residual_[l] || tail_[l] == width, errors::InvalidArgument("a residual layer must keep its width"));
      nparam += (width + 2) * tail_[l];
      width = tail_[l];
      wmax = std::max<int64>(wmax, width);
    }
    const bool fused_out = tail_params.NumElements() > 0;
    OP_REQUIRES(ctx, !fused_out || (N0 > 0 && tail_params.NumElements() == nparam + width + 1),
                errors::InvalidArgument("tail_params does not match w0 and the tail's widths"));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({P, fused_out ? 1 : N0 ? N0 : F}), &d_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({P, 2}), &l_out));

    const E* ems = em.flat<E>().data();
    const E* rs = rij.flat<E>().data();
    const int32* nl = nlist.flat<int32>().data();
    const T* gc = g_coef.flat<T>().data();
    const T* rc = r_coef.flat<T>().data();
    const T* bc = b_coef.flat<T>().data();
    const T* gi = g_info.flat<T>().data();
    const T* pad = g_pad.flat<T>().data();
    std::vector<Locator<T>> loc;
    for (int64 e = 0; e < n; ++e) loc.emplace_back(gi + e * kInfo);
    const Locator<T> bloc(b_info.flat<T>().data());
    T* dd = d_out->flat<T>().data();
    const T* bmean = b_mean.flat<T>().data();
    const T* bstd = b_std.flat<T>().data();
    double* lo = l_out->flat<double>().data();
    const double* lw = lin_w.flat<double>().data();
    const int axis = axis_;
    const T inv_nnei = T(1) / T(nnei);
    const T* w0d = w0.flat<T>().data();
    const T* b0d = b0.flat<T>().data();
    // fused: feature rows of kBlock points at a time in a per-thread buffer, then their first layer.
    // 48 points: the recommended input's 1,648 x 240 W0 (3.2 MB in float64) is read from L3 once
    // per block; 48 against 24 points gave 99k against 89-93k points/s there (Si64 64^3, 2-core Xeon),
    // and the same within the drift on the 560 x 64 speed model
    constexpr int64 kBlock = 8 * kTileRows;
    const T* tp = tail_params.flat<T>().data();
    // the first layer's activations and the tail, on the block's rows (z, h: [rows, wmax])
    auto tail = [&](int64 nr, const T* fb, T* z, T* h, T* out) {
      first_layer<T>(fb, nr, F, w0d, N0, b0d, h);
      tanh_rows<T>(h, nr * N0);
      int64 nin = N0;
      const T* q = tp;
      for (size_t l = 0; l < tail_.size(); ++l) {
        const int64 nout = tail_[l];
        const T *W = q, *b = q + nin * nout, *idt = b + nout;
        q = idt + nout;
        first_layer<T>(h, nr, nin, W, nout, b, z);
        tanh_rows<T>(z, nr * nout);
        if (!tail_residual_[l]) {
          std::copy(z, z + nr * nout, h);
        } else {
          for (int64 r = 0; r < nr; ++r)
#pragma omp simd
            for (int64 i = 0; i < nout; ++i) h[r * nout + i] += idt[i] * z[r * nout + i];
        }
        nin = nout;
      }
      for (int64 r = 0; r < nr; ++r) {
        T y = q[nin];
        for (int64 i = 0; i < nin; ++i) y += h[r * nin + i] * q[i];
        out[r] = y;
      }
    };

    auto work = [&](int64 begin, int64 end) {
      std::vector<T> acc(4 * M), rb(Mr + n * Nb);
      T* rad = rb.data();
      T* bas = rad + Mr;
      // the real neighbours of one point: table rows, offsets and weights
      std::vector<int64> rows(nnei), brows(nnei);
      std::vector<T> ts(nnei), tbs(nnei), wg(4 * nnei), wr(nnei), ones(nnei, T(1));
      std::vector<int64> first(n + 1), empty(n);
      std::vector<T> fbuf(N0 ? kBlock * F : 0), zbuf(fused_out ? kBlock * wmax : 0), hbuf(zbuf.size());
      int64 block0 = begin;
      for (int64 p = begin; p < end; ++p) {
        int64 q = 0, j = 0;
        for (int64 e = 0; e < n; ++e) {
          const T avg = gi[e * kInfo + 8], sd = gi[e * kInfo + 9];
          first[e] = q;
          empty[e] = 0;
          for (const int64 stop = j + sel_[e]; j < stop; ++j) {
            if (nl[p * nnei + j] < 0) {
              ++empty[e];
              continue;
            }
            const E* emj = ems + (p * nnei + j) * 4;
            const T x = static_cast<T>(emj[0]);
            rows[q] = loc[e](x, &ts[q]);
            for (int c = 0; c < 4; ++c) wg[4 * q + c] = static_cast<T>(emj[c]);
            wr[q] = (x * sd + avg) * inv_nnei;
            if (Nb) {
              const E* rj = rs + (p * nnei + j) * 3;
              brows[q] = bloc(static_cast<T>(std::sqrt(rj[0] * rj[0] + rj[1] * rj[1] + rj[2] * rj[2])), &tbs[q]);
            }
            ++q;
          }
        }
        first[n] = q;
        if (C == 4)
          table_sum<T, 4, 4>(gc, M, q, rows.data(), ts.data(), wg.data(), acc.data());
        else
          table_sum<T, 6, 4>(gc, M, q, rows.data(), ts.data(), wg.data(), acc.data());
        for (int64 e = 0; e < n; ++e)
          if (empty[e])
            for (int64 m = 0; m < M; ++m) acc[m] += T(empty[e]) * pad[e * M + m];
        if (Mr) (C == 4 ? table_sum<T, 4, 1> : table_sum<T, 6, 1>)(rc, Mr, q, rows.data(), ts.data(), wr.data(), rad);
        for (int64 e = 0; e < n && Nb; ++e) {
          const int64 q0 = first[e];
          (C == 4 ? table_sum<T, 4, 1> : table_sum<T, 6, 1>)(bc, Nb, first[e + 1] - q0, brows.data() + q0, tbs.data() + q0, ones.data(), bas + e * Nb);
        }
        // D[m, a] = sum_c T[c, m] T[c, a] / nnei^2, written m-major as se_e2_a's reshape does:
        // one short vector per m, so the row is written in order (through a transposed buffer it
        // was 14 % of this op's time, float64)
        const T scale = inv_nnei * inv_nnei;
        T* out = N0 ? fbuf.data() + (p - block0) * F : dd + p * F;
        const T* __restrict a0 = acc.data();
        for (int64 m = 0; m < M; ++m) {
          const T t0 = a0[m] * scale, t1 = a0[M + m] * scale, t2 = a0[2 * M + m] * scale, t3 = a0[3 * M + m] * scale;
          T* __restrict o = out + m * axis;
#pragma omp simd
          for (int a = 0; a < axis; ++a) o[a] = t0 * a0[a] + t1 * a0[M + a] + t2 * a0[2 * M + a] + t3 * a0[3 * M + a];
        }
        out += M * axis;
        for (int64 i = 0; i < n * Nb; ++i) out[i] = (bas[i] - bmean[i]) / bstd[i];
        std::copy(rad, rad + Mr, out + n * Nb);
        double lr = 0, lb = 0;
        for (int64 i = 0; i < Mr; ++i) lr += double(rad[i]) * lw[i];
        for (int64 i = 0; i < n * Nb; ++i) lb += double(bas[i]) * lw[Mr + i];
        lo[2 * p] = lr;
        lo[2 * p + 1] = lb;
        if (N0 && (p + 1 - block0 == kBlock || p + 1 == end)) {
          if (fused_out)
            tail(p + 1 - block0, fbuf.data(), zbuf.data(), hbuf.data(), dd + block0);
          else
            first_layer<T>(fbuf.data(), p + 1 - block0, F, w0d, N0, b0d, dd + block0 * N0);
          block0 = p + 1;
        }
      }
    };
    auto workers = ctx->device()->tensorflow_cpu_worker_threads();
    Shard(workers->num_threads, workers->workers, P, nnei * (M * 10 + Mr * 8 + Nb * 7) + 8 * M * axis + 2 * F * N0, work);
  }

 private:
  std::vector<int> sel_, tail_, tail_residual_;
  int axis_;
};

#define REGISTER(T, E)                                                                                             \
  REGISTER_KERNEL_BUILDER(Name("ChargeDescriptor").Device(DEVICE_CPU).TypeConstraint<T>("T").TypeConstraint<E>("E"), \
                          ChargeDescriptorOp<T, E>)
REGISTER(float, double);
REGISTER(double, double);
REGISTER(float, float);
REGISTER(double, float);
