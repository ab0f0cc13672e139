// Work shared with XLA's intra-op thread pool (the FFI ThreadPool), for the kernels in this folder.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace cnnjax {

struct Progress {
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
};

// body(i) for i in [0, items), on the calling thread and on up to num_threads - 1 pool threads. The caller
// works too and then waits only for pieces another thread has taken (a helper that starts late finds none), so
// a pool busy with other work cannot stall it.
template <typename Body>
void parallel_for(ffi::ThreadPool& pool, int64_t items, Body body) {
  auto progress = std::make_shared<Progress>();
  auto work = [progress, items, body]() {
    for (int64_t i; (i = progress->next.fetch_add(1)) < items;) {
      body(i);
      progress->done.fetch_add(1, std::memory_order_release);
    }
  };
  const int64_t helpers = std::min<int64_t>(pool.num_threads(), items) - 1;
  for (int64_t t = 0; t < helpers; ++t) pool.Schedule([work]() { work(); });
  work();
  while (progress->done.load(std::memory_order_acquire) < items) std::this_thread::yield();
}

}  // namespace cnnjax
