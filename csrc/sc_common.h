// sc_common.h - helpers shared by the csrc/ translation units (C++ only).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <c10/util/Exception.h>
#include <torch/version.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include "spectraclip.h"

struct sc_tensor_s {};  // never instantiated: a sc_tensor is really an at::Tensor*
struct sc_gen_s {
  at::Generator gen;
};

namespace sc {

inline char *dup(const std::string &s) {
  char *p = static_cast<char *>(std::malloc(s.size() + 1));
  if (p == nullptr) return nullptr;
  std::memcpy(p, s.data(), s.size());
  p[s.size()] = 0;
  return p;
}

// err trims LibTorch's messages to their first paragraph: the rest is C++ context
// that means nothing to a Go caller.
inline char *err(const char *msg) {
  std::string s(msg ? msg : "unknown error");
  auto pos = s.find("\nException raised from");
  if (pos != std::string::npos) s = s.substr(0, pos);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  size_t first = s.find_first_not_of("\n ");
  s = first == std::string::npos ? std::string() : s.substr(first);
  if (s.empty()) s = "unknown error";
  return dup(s);
}

inline at::Tensor &T(sc_tensor t) {
  if (t == nullptr) throw std::invalid_argument("nil tensor handle");
  return *reinterpret_cast<at::Tensor *>(t);
}
inline sc_tensor wrap(at::Tensor t) {
  return reinterpret_cast<sc_tensor>(new at::Tensor(std::move(t)));
}

inline at::ScalarType dtype(int d) {
  switch (d) {
    case SC_FLOAT32: return at::kFloat;
    case SC_FLOAT64: return at::kDouble;
    case SC_FLOAT16: return at::kHalf;
    case SC_BFLOAT16: return at::kBFloat16;
    case SC_INT64: return at::kLong;
    case SC_INT32: return at::kInt;
    case SC_UINT8: return at::kByte;
    case SC_BOOL: return at::kBool;
    case SC_INT8: return at::kChar;
    case SC_INT16: return at::kShort;
  }
  throw std::invalid_argument("unknown dtype code " + std::to_string(d));
}

inline int dtype_code(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return SC_FLOAT32;
    case at::kDouble: return SC_FLOAT64;
    case at::kHalf: return SC_FLOAT16;
    case at::kBFloat16: return SC_BFLOAT16;
    case at::kLong: return SC_INT64;
    case at::kInt: return SC_INT32;
    case at::kByte: return SC_UINT8;
    case at::kBool: return SC_BOOL;
    case at::kChar: return SC_INT8;
    case at::kShort: return SC_INT16;
    default: return -1;
  }
}

inline at::Device device(int type, int index) {
  if (type == SC_CPU) return at::Device(at::kCPU);
  if (type == SC_CUDA) return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
  throw std::invalid_argument("unknown device type " + std::to_string(type));
}

inline at::TensorOptions opts(int dt, int devtype, int devidx) {
  return at::TensorOptions().dtype(dtype(dt)).device(device(devtype, devidx));
}

inline at::IntArrayRef ints(const int64_t *p, int n) { return at::IntArrayRef(p, n); }

// The intra-op thread count asked for with sc_set_num_threads (0: LibTorch's default).
// LibTorch keeps the count per OS thread (OpenMP's nthreads ICV, MKL's local count), and
// an OS thread that ran LibTorch code before the request keeps its old count; a goroutine
// may run on any OS thread. So every C call applies the wanted count on its thread when
// it differs, the same rule as grad mode.
inline std::atomic<int> &wanted_threads() {
  static std::atomic<int> w{0};
  return w;
}
inline thread_local int applied_threads = 0;

inline void apply_threads() {
  int w = wanted_threads().load(std::memory_order_relaxed);
  if (w > 0 && applied_threads != w) {
    applied_threads = w;  // one attempt per thread and request, even if LibTorch refuses
    if (at::get_num_threads() != w) at::set_num_threads(w);
  }
}

// Mode sets the thread-local grad mode for the duration of one C call.
struct Mode {
  c10::AutoGradMode grad;
  explicit Mode(int mode) : grad((mode & SC_MODE_NOGRAD) == 0) {}
};

}  // namespace sc

// SC_TORCH_AT_LEAST(major, minor): the LibTorch being compiled against is that version or newer.
#define SC_TORCH_AT_LEAST(ma, mi) \
  (TORCH_VERSION_MAJOR > (ma) || (TORCH_VERSION_MAJOR == (ma) && TORCH_VERSION_MINOR >= (mi)))

// SC_BEGIN / SC_END wrap every extern "C" body: whatever is thrown becomes the
// returned error string.

#define SC_BEGIN \
  try {          \
    sc::apply_threads();
#define SC_END                                               \
  return nullptr;                                            \
  }                                                          \
  catch (const c10::Error &e) {                              \
    return sc::err(e.what_without_backtrace());              \
  }                                                          \
  catch (const std::exception &e) {                          \
    return sc::err(e.what());                                \
  }                                                          \
  catch (...) {                                              \
    return sc::err("unknown C++ exception");                 \
  }
