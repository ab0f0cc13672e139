// Direct 2-D convolution for XLA:CPU, called through XLA's FFI (the primitives: ../direct.py; the build: ../native.py).
//
// Layouts: X (N, H, W, C_in), kernel F (KH, KW, C_in, C_out), Y and dY (N, OH, OW, C_out); float32;
// C_out a multiple of 16 (one 16-float vector, an AVX-512 register, per block of output channels).
//
//   forward          Y[n, oy, ox, co]  = sum_{ky, kx, ci} X[n, oy*SH + ky - PT, ox*SW + kx - PL, ci] F[ky, kx, ci, co]
//   kernel gradient  dF[ky, kx, ci, co] = sum_{n, oy, ox} X[n, oy*SH + ky - PT, ox*SW + kx - PL, ci] dY[n, oy, ox, co]
//
// (pixels outside X are the zero padding: they are skipped, never multiplied). The input gradient of a stride-1
// conv is the forward of dY with the rotated, transposed kernel; direct.py calls `forward` for it.
//
// Each output element is summed by one thread in a fixed order, and the kernel gradient's partial sums are
// split by image ranges that depend on N only, so results do not depend on the number of threads. Work is
// shared with XLA's intra-op thread pool (the FFI ThreadPool); the calling thread works too and only waits for
// pieces that other threads have started (parallel.h).

#include <algorithm>
#include <cstdint>
#include <vector>

#include "parallel.h"

namespace {

using cnnjax::parallel_for;

typedef float v16 __attribute__((vector_size(64)));

inline v16 load16(const float* p) {
  v16 v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}

inline void store16(float* p, v16 v) { __builtin_memcpy(p, &v, sizeof(v)); }

struct Geometry {
  int64_t n, h, w, cin, kh, kw, cout, oh, ow, sh, sw, pt, pl;
};

// ------------------------------------------------------------------------------------------------ forward

// Y[n, oy, ox0 : ox0 + R, co0 : co0 + 16 CB], in R x CB vector registers.
template <int CB, int R>
void forward_block(const Geometry& g, const float* x, const float* f, float* y, int64_t n, int64_t oy, int64_t ox0,
                   int64_t co0) {
  v16 acc[R][CB];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < CB; ++c) acc[r][c] = v16{};
  for (int64_t ky = 0; ky < g.kh; ++ky) {
    const int64_t iy = oy * g.sh + ky - g.pt;
    if (iy < 0 || iy >= g.h) continue;
    const float* x_row = x + (n * g.h + iy) * g.w * g.cin;
    for (int64_t kx = 0; kx < g.kw; ++kx) {
      const int64_t ix0 = ox0 * g.sw + kx - g.pl;
      const float* f_tap = f + (ky * g.kw + kx) * g.cin * g.cout + co0;
      if (ix0 >= 0 && ix0 + (R - 1) * g.sw < g.w) {  // the block's pixels all inside: no test in the loop
        const float* x_px = x_row + ix0 * g.cin;
        for (int64_t ci = 0; ci < g.cin; ++ci) {
          v16 fv[CB];
          for (int c = 0; c < CB; ++c) fv[c] = load16(f_tap + ci * g.cout + 16 * c);
          for (int r = 0; r < R; ++r) {
            const float xv = x_px[r * g.sw * g.cin + ci];
            for (int c = 0; c < CB; ++c) acc[r][c] += xv * fv[c];
          }
        }
      } else {
        for (int64_t ci = 0; ci < g.cin; ++ci) {
          v16 fv[CB];
          for (int c = 0; c < CB; ++c) fv[c] = load16(f_tap + ci * g.cout + 16 * c);
          for (int r = 0; r < R; ++r) {
            const int64_t ix = ix0 + r * g.sw;
            if (ix < 0 || ix >= g.w) continue;
            const float xv = x_row[ix * g.cin + ci];
            for (int c = 0; c < CB; ++c) acc[r][c] += xv * fv[c];
          }
        }
      }
    }
  }
  float* y_px = y + ((n * g.oh + oy) * g.ow + ox0) * g.cout + co0;
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < CB; ++c) store16(y_px + r * g.cout + 16 * c, acc[r][c]);
}

// A last block of `rem` < R pixels.
template <int CB, int R>
void forward_tail(int rem, const Geometry& g, const float* x, const float* f, float* y, int64_t n, int64_t oy,
                  int64_t ox0, int64_t co0) {
  if (rem == R) {
    forward_block<CB, R>(g, x, f, y, n, oy, ox0, co0);
  } else if constexpr (R > 1) {
    forward_tail<CB, R - 1>(rem, g, x, f, y, n, oy, ox0, co0);
  }
}

// Output row (n, oy): blocks of R pixels by 16 CB channels (R x CB accumulators + CB kernel vectors <= 29 of
// the 32 vector registers).
template <int CB, int R>
void forward_row_by(const Geometry& g, const float* x, const float* f, float* y, int64_t n, int64_t oy) {
  for (int64_t co0 = 0; co0 < g.cout; co0 += 16 * CB) {
    int64_t ox0 = 0;
    for (; ox0 + R <= g.ow; ox0 += R) forward_block<CB, R>(g, x, f, y, n, oy, ox0, co0);
    if (ox0 < g.ow) forward_tail<CB, R - 1>(static_cast<int>(g.ow - ox0), g, x, f, y, n, oy, ox0, co0);
  }
}

void forward_row(const Geometry& g, const float* x, const float* f, float* y, int64_t n, int64_t oy) {
  if (g.cout % 64 == 0) {
    forward_row_by<4, 6>(g, x, f, y, n, oy);
  } else if (g.cout % 32 == 0) {
    forward_row_by<2, 12>(g, x, f, y, n, oy);
  } else {
    forward_row_by<1, 16>(g, x, f, y, n, oy);
  }
}

ffi::Error Forward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> f,
                   ffi::ResultBuffer<ffi::F32> y, int64_t sh, int64_t sw, int64_t pt, int64_t pl) {
  auto xd = x.dimensions(), fd = f.dimensions(), yd = y->dimensions();
  const Geometry g{xd[0], xd[1], xd[2], xd[3], fd[0], fd[1], fd[3], yd[1], yd[2], sh, sw, pt, pl};
  if (g.cout % 16 != 0) return ffi::Error::InvalidArgument("direct conv: C_out must be a multiple of 16");
  const float* xp = x.typed_data();
  const float* fp = f.typed_data();
  float* yp = y->typed_data();
  const int64_t rows = g.n * g.oh;
  const int64_t per_piece = std::max<int64_t>(1, rows / (8 * std::max<int64_t>(1, pool.num_threads())));
  parallel_for(pool, (rows + per_piece - 1) / per_piece, [&g, xp, fp, yp, rows, per_piece](int64_t piece) {
    for (int64_t row = piece * per_piece; row < std::min(rows, (piece + 1) * per_piece); ++row)
      forward_row(g, xp, fp, yp, row / g.oh, row % g.oh);
  });
  return ffi::Error::Success();
}

// ------------------------------------------------------------------------------------------ kernel gradient

// Output positions o in [lo, hi) whose input pixel o*s + k - p lies in [0, size).
void valid_outputs(int64_t size, int64_t out, int64_t s, int64_t k, int64_t p, int64_t& lo, int64_t& hi) {
  const int64_t offset = k - p;
  lo = offset >= 0 ? 0 : (-offset + s - 1) / s;
  hi = size - offset <= 0 ? 0 : std::min(out, (size - offset - 1) / s + 1);
  hi = std::max(hi, lo);
}

// dF[ky, kx, ci0 : ci0 + RI, co0 : co0 + 16 CB] += the sum over images [n0, n1) and their output pixels, in
// RI x CB registers (loaded and stored once per image range: a large kernel's tiles do not stream through
// memory once per image).
template <int RI, int CB>
void kernel_gradient_tile(const Geometry& g, const float* x, const float* dy, float* df, int64_t n0, int64_t n1,
                          int64_t ky, int64_t kx, int64_t ci0, int64_t co0, int64_t oy0, int64_t oy1, int64_t ox0,
                          int64_t ox1) {
  float* out = df + ((ky * g.kw + kx) * g.cin + ci0) * g.cout + co0;
  v16 acc[RI][CB];
  for (int r = 0; r < RI; ++r)
    for (int c = 0; c < CB; ++c) acc[r][c] = load16(out + r * g.cout + 16 * c);
  for (int64_t n = n0; n < n1; ++n) {
    for (int64_t oy = oy0; oy < oy1; ++oy) {
      const float* x_row = x + ((n * g.h + oy * g.sh + ky - g.pt) * g.w + kx - g.pl) * g.cin + ci0;
      const float* dy_row = dy + (n * g.oh + oy) * g.ow * g.cout + co0;
      for (int64_t ox = ox0; ox < ox1; ++ox) {
        const float* x_px = x_row + ox * g.sw * g.cin;
        v16 d[CB];
        for (int c = 0; c < CB; ++c) d[c] = load16(dy_row + ox * g.cout + 16 * c);
        for (int r = 0; r < RI; ++r) {
          const float xv = x_px[r];
          for (int c = 0; c < CB; ++c) acc[r][c] += xv * d[c];
        }
      }
    }
  }
  for (int r = 0; r < RI; ++r)
    for (int c = 0; c < CB; ++c) store16(out + r * g.cout + 16 * c, acc[r][c]);
}

template <int RI, int CB>
void kernel_gradient_tail(int rem, const Geometry& g, const float* x, const float* dy, float* df, int64_t n0,
                          int64_t n1, int64_t ky, int64_t kx, int64_t ci0, int64_t co0, int64_t oy0, int64_t oy1,
                          int64_t ox0, int64_t ox1) {
  if (rem == RI) {
    kernel_gradient_tile<RI, CB>(g, x, dy, df, n0, n1, ky, kx, ci0, co0, oy0, oy1, ox0, ox1);
  } else if constexpr (RI > 1) {
    kernel_gradient_tail<RI - 1, CB>(rem, g, x, dy, df, n0, n1, ky, kx, ci0, co0, oy0, oy1, ox0, ox1);
  }
}

// Images [n0, n1)'s contribution to dF[ky, kx, :, co0 : co0 + 16 CB], added to df.
template <int RI, int CB>
void kernel_gradient_piece(const Geometry& g, const float* x, const float* dy, float* df, int64_t n0, int64_t n1,
                           int64_t ky, int64_t kx, int64_t co0) {
  int64_t oy0, oy1, ox0, ox1;
  valid_outputs(g.h, g.oh, g.sh, ky, g.pt, oy0, oy1);
  valid_outputs(g.w, g.ow, g.sw, kx, g.pl, ox0, ox1);
  if (oy0 == oy1 || ox0 == ox1) return;
  int64_t ci0 = 0;
  for (; ci0 + RI <= g.cin; ci0 += RI)
    kernel_gradient_tile<RI, CB>(g, x, dy, df, n0, n1, ky, kx, ci0, co0, oy0, oy1, ox0, ox1);
  if (ci0 < g.cin)
    kernel_gradient_tail<RI - 1, CB>(static_cast<int>(g.cin - ci0), g, x, dy, df, n0, n1, ky, kx, ci0, co0, oy0,
                                     oy1, ox0, ox1);
}

ffi::Error KernelGradient(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> dy,
                          ffi::ResultBuffer<ffi::F32> df, int64_t sh, int64_t sw, int64_t pt, int64_t pl) {
  auto xd = x.dimensions(), yd = dy.dimensions(), fd = df->dimensions();
  const Geometry g{xd[0], xd[1], xd[2], xd[3], fd[0], fd[1], fd[3], yd[1], yd[2], sh, sw, pt, pl};
  if (g.cout % 16 != 0) return ffi::Error::InvalidArgument("direct conv: C_out must be a multiple of 16");
  const float* xp = x.typed_data();
  const float* dyp = dy.typed_data();
  float* out = df->typed_data();
  const int64_t size = g.kh * g.kw * g.cin * g.cout;
  // Partial sums over image ranges set by N and the kernel's size alone (at most 16, and at most 4M floats in
  // all: a large kernel's partials would cost more memory traffic than its products), added up in order. The
  // pieces of work: (range, tap, block of output channels); each element of a range's sum is one piece's.
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>({g.n, 16, (int64_t{1} << 22) / std::max<int64_t>(size, 1)}));
  const int cb = g.cout % 32 == 0 ? 2 : 1;
  const int64_t co_blocks = g.cout / (16 * cb), per_part = g.kh * g.kw * co_blocks;
  std::vector<float> partial(parts > 1 ? parts * size : 0, 0.0f);
  float* target = parts > 1 ? partial.data() : out;
  if (parts == 1) std::fill(out, out + size, 0.0f);
  parallel_for(pool, parts * per_part, [&g, xp, dyp, target, size, parts, per_part, co_blocks, cb](int64_t i) {
    const int64_t p = i / per_part, tap = (i % per_part) / co_blocks, co0 = (i % co_blocks) * 16 * cb;
    const int64_t n0 = g.n * p / parts, n1 = g.n * (p + 1) / parts;
    if (cb == 2) {
      kernel_gradient_piece<8, 2>(g, xp, dyp, target + p * size, n0, n1, tap / g.kw, tap % g.kw, co0);
    } else {
      kernel_gradient_piece<16, 1>(g, xp, dyp, target + p * size, n0, n1, tap / g.kw, tap % g.kw, co0);
    }
  });
  if (parts == 1) return ffi::Error::Success();
  const float* pp = partial.data();
  const int64_t per_piece = 4096;
  parallel_for(pool, (size + per_piece - 1) / per_piece, [pp, out, size, parts, per_piece](int64_t piece) {
    for (int64_t i = piece * per_piece; i < std::min(size, (piece + 1) * per_piece); ++i) {
      float sum = pp[i];
      for (int64_t p = 1; p < parts; ++p) sum += pp[p * size + i];
      out[i] = sum;
    }
  });
  return ffi::Error::Success();
}

}  // namespace

// Both handlers: (X, F or dY) -> (Y or dF), with the strides and the low paddings as attributes.
static auto conv_binding() {
  return ffi::Ffi::Bind()
      .Ctx<ffi::ThreadPool>()
      .Arg<ffi::Buffer<ffi::F32>>()
      .Arg<ffi::Buffer<ffi::F32>>()
      .Ret<ffi::Buffer<ffi::F32>>()
      .Attr<int64_t>("sh")
      .Attr<int64_t>("sw")
      .Attr<int64_t>("pt")
      .Attr<int64_t>("pl");
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(cnnjax_direct_conv_forward, Forward, conv_binding());

XLA_FFI_DEFINE_HANDLER_SYMBOL(cnnjax_direct_conv_kernel_gradient, KernelGradient, conv_binding());
