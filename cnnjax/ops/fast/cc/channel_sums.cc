// Per-channel sums over every axis but the last, for BatchNorm on XLA:CPU (the primitives: ../channels.py).
//
//   channel_sum  s[c] = sum_r A[r, c]            channel_dot  s[c] = sum_r A[r, c] B[r, c]
//   channel_centered_dot  s[c] = sum_r A[r, c] (X[r, c] - m[c])
//
// with A, B, X float32 viewed as (rows, C); the centred dot rounds X - m as channel_dot's B would hold it (the
// same bits as channel_dot(A, X - m), without that array). XLA:CPU lowers such a sum to a reduce-window whose
// outputs each add their rows one after another; here the rows are split into at most 16 ranges set by the row
// count alone (the result does not depend on the number of threads), each range summed in blocks of 64 rows (a
// partial sum per block, then added to the range's), and the ranges added in order. One pass over A (and B, X).

#include <algorithm>
#include <cstdint>
#include <vector>

#include "parallel.h"

namespace {

constexpr int64_t kBlockRows = 64;

enum class Sum { kPlain, kDot, kCenteredDot };

// b: B (kDot) or X (kCenteredDot); m: the centre (kCenteredDot).
template <Sum kSum>
void channel_sums(ffi::ThreadPool& pool, const float* a, const float* b, const float* m, int64_t rows, int64_t c,
                  float* out) {
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(16, rows / 512));
  std::vector<float> partial(parts * c, 0.0f);
  float* pp = partial.data();
  cnnjax::parallel_for(pool, parts, [a, b, m, rows, c, parts, pp](int64_t p) {
    float* range_sum = pp + p * c;
    std::vector<float> block(c);
    const int64_t end = rows * (p + 1) / parts;
    for (int64_t r0 = rows * p / parts; r0 < end; r0 += kBlockRows) {
      std::fill(block.begin(), block.end(), 0.0f);
      float* bl = block.data();
      for (int64_t r = r0; r < std::min(end, r0 + kBlockRows); ++r) {
        const float* ar = a + r * c;
        if constexpr (kSum == Sum::kDot) {
          const float* br = b + r * c;
          for (int64_t k = 0; k < c; ++k) bl[k] += ar[k] * br[k];
        } else if constexpr (kSum == Sum::kCenteredDot) {
          const float* xr = b + r * c;
          for (int64_t k = 0; k < c; ++k) {
            const float centered = xr[k] - m[k];
            bl[k] += ar[k] * centered;
          }
        } else {
          for (int64_t k = 0; k < c; ++k) bl[k] += ar[k];
        }
      }
      for (int64_t k = 0; k < c; ++k) range_sum[k] += bl[k];
    }
  });
  for (int64_t k = 0; k < c; ++k) {
    float sum = pp[k];
    for (int64_t p = 1; p < parts; ++p) sum += pp[p * c + k];
    out[k] = sum;
  }
}

ffi::Error ChannelSum(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> a, ffi::ResultBuffer<ffi::F32> out) {
  const int64_t c = out->dimensions()[0];
  if (c == 0) return ffi::Error::Success();
  channel_sums<Sum::kPlain>(pool, a.typed_data(), nullptr, nullptr, a.element_count() / c, c, out->typed_data());
  return ffi::Error::Success();
}

ffi::Error ChannelDot(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> a, ffi::Buffer<ffi::F32> b,
                      ffi::ResultBuffer<ffi::F32> out) {
  const int64_t c = out->dimensions()[0];
  if (c == 0) return ffi::Error::Success();
  channel_sums<Sum::kDot>(pool, a.typed_data(), b.typed_data(), nullptr, a.element_count() / c, c,
                          out->typed_data());
  return ffi::Error::Success();
}

ffi::Error ChannelCenteredDot(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> a, ffi::Buffer<ffi::F32> x,
                              ffi::Buffer<ffi::F32> m, ffi::ResultBuffer<ffi::F32> out) {
  const int64_t c = out->dimensions()[0];
  if (c == 0) return ffi::Error::Success();
  channel_sums<Sum::kCenteredDot>(pool, a.typed_data(), x.typed_data(), m.typed_data(), a.element_count() / c, c,
                                  out->typed_data());
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(cnnjax_channel_sum, ChannelSum,
                              ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Arg<ffi::Buffer<ffi::F32>>().Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(cnnjax_channel_dot, ChannelDot,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(cnnjax_channel_centered_dot, ChannelCenteredDot,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
