// sc_ops.cpp - tensors, creation, copies, the generic op families and autograd.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <torch/version.h>

#include <chrono>
#include <cmath>
#include <stdexcept>
#include <algorithm>
#include <mutex>
#include <thread>
#include <vector>

#include "sc_common.h"

using sc::T;
using sc::wrap;

extern "C" {

void sc_free_string(char *s) { std::free(s); }
void sc_free_array(void *p) { std::free(p); }

sc_err sc_version(char **out) {
  SC_BEGIN
  std::string v = std::to_string(TORCH_VERSION_MAJOR) + "." +
                  std::to_string(TORCH_VERSION_MINOR) + "." +
                  std::to_string(TORCH_VERSION_PATCH);
  *out = sc::dup(v);
  SC_END
}

sc_err sc_manual_seed(uint64_t seed) {
  SC_BEGIN
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_current_seed(seed);
  SC_END
}

sc_err sc_set_num_threads(int n) {
  SC_BEGIN
  if (n < 1) throw std::invalid_argument("thread count must be >= 1, got " + std::to_string(n));
  sc::wanted_threads().store(n);
  sc::applied_threads = n;
  at::set_num_threads(n);
  SC_END
}

int sc_thread_num_threads(void) {
  try {
    return at::get_num_threads();
  } catch (...) {
    return -1;
  }
}

int sc_get_num_threads(void) {
  try {
    sc::apply_threads();
    return at::get_num_threads();
  } catch (...) {
    return -1;
  }
}

// TF32: LibTorch 2.11 keeps it as fp32_precision per backend and op (PyTorch's
// torch.backends.cuda.matmul.fp32_precision and torch.backends.cudnn.{conv,rnn}.fp32_precision),
// and its old getters (allowTF32CuBLAS, allowTF32CuDNN), which LibTorch and inductor still
// read, throw when the old state and the new settings disagree ("a mix of the legacy and new
// APIs"). Setting only the new API leaves the old matmul precision behind, so on 2.11 the
// shim sets both and leaves them equal: the old setters (which write both) and then the new
// settings explicitly, matmul and cuDNN convolutions and RNNs together (as cudnn.allow_tf32
// does). Before 2.11 the old flags are all there is.
// at::Context holds these flags in every build, CUDA or not (they only act on CUDA).
#if SC_TORCH_AT_LEAST(2, 11)
#define SC_TF32_FP32_PRECISION 1
#endif

sc_err sc_set_allow_tf32(int matmul, int conv) {
  SC_BEGIN
  auto &ctx = at::globalContext();
  if (matmul >= 0) ctx.setAllowTF32CuBLAS(matmul != 0);
  if (conv >= 0) ctx.setAllowTF32CuDNN(conv != 0);
#ifdef SC_TF32_FP32_PRECISION
  using at::Float32Backend, at::Float32Op, at::Float32Precision;
  auto p = [](int on) { return on != 0 ? Float32Precision::TF32 : Float32Precision::IEEE; };
  if (matmul >= 0) ctx.setFloat32Precision(Float32Backend::CUDA, Float32Op::MATMUL, p(matmul));
  if (conv >= 0) {
    ctx.setFloat32Precision(Float32Backend::CUDA, Float32Op::CONV, p(conv));
    ctx.setFloat32Precision(Float32Backend::CUDA, Float32Op::RNN, p(conv));
  }
#endif
  SC_END
}

sc_err sc_get_allow_tf32(int *matmul, int *conv) {
  SC_BEGIN
  auto &ctx = at::globalContext();
#ifdef SC_TF32_FP32_PRECISION
  using at::Float32Backend, at::Float32Op, at::Float32Precision;
  *matmul = ctx.float32Precision(Float32Backend::CUDA, Float32Op::MATMUL) == Float32Precision::TF32;
  *conv = ctx.float32Precision(Float32Backend::CUDA, Float32Op::CONV) == Float32Precision::TF32;
  if ((ctx.allowTF32CuBLAS() ? 1 : 0) != *matmul || (ctx.allowTF32CuDNN() ? 1 : 0) != *conv)
    throw std::runtime_error("LibTorch's old TF32 flags disagree with its fp32_precision settings");
#else
  *matmul = ctx.allowTF32CuBLAS() ? 1 : 0;
  *conv = ctx.allowTF32CuDNN() ? 1 : 0;
#endif
  SC_END
}

// Deterministic algorithms (PyTorch's torch.use_deterministic_algorithms(on, warn_only=True)
// with torch.backends.cudnn.deterministic = on and cudnn.benchmark off): LibTorch picks a
// deterministic kernel wherever it has one, and an op that has none warns (once, naming it)
// instead of stopping a training. On 2.1 and later LibTorch also fills every tensor that
// empty() makes with NaN (float) or the largest integer while it is on, so a read of
// uninitialised memory is caught; that fill is what it costs on the CPU.
sc_err sc_set_deterministic(int on) {
  SC_BEGIN
  auto &ctx = at::globalContext();
  ctx.setDeterministicAlgorithms(on != 0, /*warn_only=*/true);
  ctx.setDeterministicCuDNN(on != 0);
  if (on != 0) ctx.setBenchmarkCuDNN(false);
  SC_END
}

sc_err sc_get_deterministic(int *on) {
  SC_BEGIN
  auto &ctx = at::globalContext();
  *on = ctx.deterministicAlgorithms() && ctx.deterministicCuDNN() ? 1 : 0;
  SC_END
}

// sc_parallel_threads runs at::parallel_for over n items (grain 1) as the fused kernels do
// and counts the distinct threads that ran a chunk.
sc_err sc_parallel_threads(int64_t n, int *threads) {
  SC_BEGIN
  std::mutex mu;
  std::vector<std::thread::id> seen;
  at::parallel_for(0, n, 1, [&](int64_t b, int64_t e) {
    volatile double sink = 0;
    for (int64_t i = b; i < e; i++)
      for (int k = 0; k < 200000; k++) sink = sink + k;  // long enough for every thread to start
    std::lock_guard<std::mutex> lk(mu);
    if (std::find(seen.begin(), seen.end(), std::this_thread::get_id()) == seen.end())
      seen.push_back(std::this_thread::get_id());
  });
  *threads = static_cast<int>(seen.size());
  SC_END
}

sc_err sc_bench_add_loop(sc_tensor a, sc_tensor b, int64_t n, int use_out, int64_t *ns) {
  SC_BEGIN
  at::Tensor &x = T(a), &y = T(b);
  at::Tensor o = at::empty_like(x);
  auto t0 = std::chrono::steady_clock::now();
  if (use_out) {
    for (int64_t i = 0; i < n; i++) at::add_out(o, x, y);
  } else {
    for (int64_t i = 0; i < n; i++) {
      at::Tensor c = at::add(x, y);
    }
  }
  auto t1 = std::chrono::steady_clock::now();
  *ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count();
  SC_END
}

// ---- tensor lifetime and metadata ----

void sc_tensor_free(sc_tensor t) { delete reinterpret_cast<at::Tensor *>(t); }

void sc_tensor_free_many(const sc_tensor *ts, int64_t n) {
  for (int64_t i = 0; i < n; i++) delete reinterpret_cast<at::Tensor *>(ts[i]);
}

sc_err sc_tensor_dim(sc_tensor t, int64_t *ndim) {
  SC_BEGIN
  *ndim = T(t).dim();
  SC_END
}

sc_err sc_tensor_shape(sc_tensor t, int64_t *shape) {
  SC_BEGIN
  auto s = T(t).sizes();
  for (size_t i = 0; i < s.size(); i++) shape[i] = s[i];
  SC_END
}

sc_err sc_tensor_info(sc_tensor t, int *dtype, int *device_type, int *device_index,
                      int *requires_grad, int64_t *numel) {
  SC_BEGIN
  at::Tensor &x = T(t);
  if (!x.defined()) throw std::invalid_argument("undefined tensor");
  *dtype = sc::dtype_code(x.scalar_type());
  *device_type = x.is_cuda() ? SC_CUDA : SC_CPU;
  *device_index = x.is_cuda() ? x.device().index() : 0;
  *requires_grad = x.requires_grad() ? 1 : 0;
  *numel = x.numel();
  SC_END
}

sc_err sc_tensor_shallow_clone(sc_tensor t, sc_tensor *out) {
  SC_BEGIN
  *out = wrap(T(t));
  SC_END
}

// ---- creation and data ----

sc_err sc_empty(const int64_t *shape, int ndim, int dtype, int dev_type, int dev_index,
                sc_tensor *out) {
  SC_BEGIN
  *out = wrap(at::empty(sc::ints(shape, ndim), sc::opts(dtype, dev_type, dev_index)));
  SC_END
}

sc_err sc_full(const int64_t *shape, int ndim, double value, int dtype, int dev_type,
               int dev_index, sc_tensor *out) {
  SC_BEGIN
  *out = wrap(at::full(sc::ints(shape, ndim), value, sc::opts(dtype, dev_type, dev_index)));
  SC_END
}

sc_err sc_from_data(const void *data, int64_t nbytes, const int64_t *shape, int ndim,
                    int dtype, int dev_type, int dev_index, sc_tensor *out) {
  SC_BEGIN
  at::Tensor cpu = at::empty(sc::ints(shape, ndim), sc::opts(dtype, SC_CPU, 0));
  int64_t want = cpu.numel() * static_cast<int64_t>(cpu.element_size());
  if (want != nbytes)
    throw std::invalid_argument("data holds " + std::to_string(nbytes) + " bytes, shape " +
                                c10::str(cpu.sizes()) + " needs " + std::to_string(want));
  if (nbytes > 0) std::memcpy(cpu.data_ptr(), data, nbytes);
  if (dev_type != SC_CPU) cpu = cpu.to(sc::device(dev_type, dev_index));
  *out = wrap(cpu);
  SC_END
}

sc_err sc_copy_out(sc_tensor t, void *data, int64_t nbytes, int dtype) {
  SC_BEGIN
  at::NoGradGuard ng;
  at::Tensor x = T(t).detach();
  at::ScalarType st = sc::dtype(dtype);
  int64_t want = x.numel() * static_cast<int64_t>(c10::elementSize(st));
  if (want != nbytes)
    throw std::invalid_argument("destination holds " + std::to_string(nbytes) +
                                " bytes, tensor " + c10::str(x.sizes()) + " needs " +
                                std::to_string(want));
  if (!x.is_cpu()) x = x.to(at::kCPU);
  if (x.scalar_type() != st) x = x.to(st);
  x = x.contiguous();
  if (nbytes > 0) std::memcpy(data, x.data_ptr(), nbytes);
  SC_END
}

sc_err sc_copy_in(sc_tensor t, const void *data, int64_t nbytes, int dtype) {
  SC_BEGIN
  at::NoGradGuard ng;
  at::Tensor &x = T(t);
  at::ScalarType st = sc::dtype(dtype);
  int64_t want = x.numel() * static_cast<int64_t>(c10::elementSize(st));
  if (want != nbytes)
    throw std::invalid_argument("source holds " + std::to_string(nbytes) + " bytes, tensor " +
                                c10::str(x.sizes()) + " needs " + std::to_string(want));
  if (x.is_cpu() && x.is_contiguous() && x.scalar_type() == st) {
    if (nbytes > 0) std::memcpy(x.data_ptr(), data, nbytes);
    // what copy_ does: autograd checks the version of tensors it saved for backward
    x.unsafeGetTensorImpl()->bump_version();
  } else {
    at::Tensor src = at::from_blob(const_cast<void *>(data), x.sizes(),
                                   at::TensorOptions().dtype(st));
    x.copy_(src);  // copies (and converts) before returning: data is not retained
  }
  SC_END
}

sc_err sc_arange(double start, double end, double step, int dtype, int dev_type,
                 int dev_index, sc_tensor *out) {
  SC_BEGIN
  *out = wrap(at::arange(start, end, step, sc::opts(dtype, dev_type, dev_index)));
  SC_END
}

sc_err sc_eye(int64_t n, int dtype, int dev_type, int dev_index, sc_tensor *out) {
  SC_BEGIN
  *out = wrap(at::eye(n, sc::opts(dtype, dev_type, dev_index)));
  SC_END
}

sc_err sc_random(int kind, const int64_t *shape, int ndim, double lo, double hi, int dtype,
                 int dev_type, int dev_index, sc_gen gen, sc_tensor *out) {
  SC_BEGIN
  c10::optional<at::Generator> g;
  if (gen != nullptr) g = gen->gen;
  auto o = sc::opts(dtype, dev_type, dev_index);
  auto size = sc::ints(shape, ndim);
  at::Tensor r;
  switch (kind) {
    case 0: r = at::empty(size, o).uniform_(0.0, 1.0, g); break;
    case 1: r = at::empty(size, o).normal_(0.0, 1.0, g); break;
    case 2:
      if (!(hi > lo)) throw std::invalid_argument("uniform: need lo < hi");
      r = at::empty(size, o).uniform_(lo, hi, g);
      break;
    case 3:
      if (!(hi > lo)) throw std::invalid_argument("randint: need lo < hi");
      r = at::empty(size, o).random_(static_cast<int64_t>(lo), static_cast<int64_t>(hi), g);
      break;
    default: throw std::invalid_argument("unknown random kind");
  }
  *out = wrap(r);
  SC_END
}

sc_err sc_to(int mode, sc_tensor t, int dtype, int dev_type, int dev_index, int copy,
             sc_tensor *out) {
  SC_BEGIN
  sc::Mode m(mode);
  at::Tensor &x = T(t);
  at::ScalarType st = dtype < 0 ? x.scalar_type() : sc::dtype(dtype);
  at::Device dev = dev_type < 0 ? x.device() : sc::device(dev_type, dev_index);
  *out = wrap(x.to(dev, st, /*non_blocking=*/false, copy != 0));
  SC_END
}

sc_err sc_item(sc_tensor t, double *out) {
  SC_BEGIN
  at::Tensor &x = T(t);
  if (x.numel() != 1)
    throw std::invalid_argument("item needs one element, tensor has shape " + c10::str(x.sizes()));
  *out = x.item<double>();
  SC_END
}

// ---- generic ops ----

static at::Tensor unary(int op, const at::Tensor &a, double s1, double s2) {
  switch (op) {
    case 0: return at::neg(a);
    case 1: return at::exp(a);
    case 2: return at::log(a);
    case 3: return at::sigmoid(a);
    case 4: return at::relu(a);
    case 5: return at::tanh(a);
    case 6: return at::sqrt(a);
    case 7: return at::abs(a);
    case 8: return at::square(a);
    case 9: return at::leaky_relu(a, s1);
    case 10: return at::clamp(a, s1, s2);
    case 11: return at::clamp_min(a, s1);
    case 12: return at::clamp_max(a, s1);
    case 13: return at::pow(a, s1);
    case 14: return at::add(a, s1);
    case 15: return at::mul(a, s1);
    case 16: return at::sub(a, s1);
    case 17: return at::div(a, s1);
    case 18: return at::rsub(a, s1);
    case 19: return at::logical_not(a);
    case 20: return at::isnan(a);
    case 21: return at::isfinite(a);
    case 22: return at::floor(a);
    case 23: return at::round(a);
    case 24: return a.detach();
    case 25: return a.clone();
    case 26: return a.contiguous();
    case 27: return at::log1p(a);
    case 28: return at::reciprocal(a);
    case 29: return at::sign(a);
    case 30: return at::eq(a, s1);
    case 31: return at::ne(a, s1);
    case 32: return at::lt(a, s1);
    case 33: return at::le(a, s1);
    case 34: return at::gt(a, s1);
    case 35: return at::ge(a, s1);
    case 36: return at::softplus(a);
    case 37: return at::rsqrt(a);
    case 38: return at::ceil(a);
    case 39: return at::full_like(a, s1);
    case 40: return at::zeros_like(a);
    case 41: return at::ones_like(a);
    case 42: return at::nan_to_num(a, s1, s2, -s2);
    case 43: return at::sin(a);
    case 44: return at::cos(a);
    case 45: return at::log_sigmoid(a);
    case 46: return at::cumsum(a, static_cast<int64_t>(s1));
    case 47: return at::softmax(a, static_cast<int64_t>(s1));
  }
  throw std::invalid_argument("unknown unary op " + std::to_string(op));
}

sc_err sc_unary(int op, int mode, sc_tensor a, double s1, double s2, sc_tensor *out) {
  SC_BEGIN
  sc::Mode m(mode);
  *out = wrap(unary(op, T(a), s1, s2));
  SC_END
}

sc_err sc_unary_(int op, int mode, sc_tensor a, double s1, double s2) {
  SC_BEGIN
  sc::Mode m(mode);
  at::Tensor &x = T(a);
  switch (op) {
    case 0: x.neg_(); break;
    case 1: x.exp_(); break;
    case 2: x.log_(); break;
    case 3: x.sigmoid_(); break;
    case 4: x.relu_(); break;
    case 6: x.sqrt_(); break;
    case 7: x.abs_(); break;
    case 9: at::leaky_relu_(x, s1); break;
    case 10: x.clamp_(s1, s2); break;
    case 11: x.clamp_min_(s1); break;
    case 12: x.clamp_max_(s1); break;
    case 13: x.pow_(s1); break;
    case 14: x.add_(s1); break;
    case 15: x.mul_(s1); break;
    case 16: x.sub_(s1); break;
    case 17: x.div_(s1); break;
    case 39: x.fill_(s1); break;
    case 40: x.zero_(); break;
    case 42: x.nan_to_num_(s1, s2, -s2); break;
    default: x.copy_(unary(op, x, s1, s2));
  }
  SC_END
}

static at::Tensor binary(int op, const at::Tensor &a, const at::Tensor &b) {
  switch (op) {
    case 0: return at::add(a, b);
    case 1: return at::sub(a, b);
    case 2: return at::mul(a, b);
    case 3: return at::div(a, b);
    case 4: return at::pow(a, b);
    case 5: return at::maximum(a, b);
    case 6: return at::minimum(a, b);
    case 7: return at::eq(a, b);
    case 8: return at::ne(a, b);
    case 9: return at::lt(a, b);
    case 10: return at::le(a, b);
    case 11: return at::gt(a, b);
    case 12: return at::ge(a, b);
    case 13: return at::logical_and(a, b);
    case 14: return at::logical_or(a, b);
    case 15: return at::matmul(a, b);
    case 16: return at::bmm(a, b);
    case 17: return at::mm(a, b);
    case 18: return at::binary_cross_entropy_with_logits(a, b);
    case 19: return at::logical_xor(a, b);
  }
  throw std::invalid_argument("unknown binary op " + std::to_string(op));
}

sc_err sc_binary(int op, int mode, sc_tensor a, sc_tensor b, sc_tensor *out) {
  SC_BEGIN
  sc::Mode m(mode);
  *out = wrap(binary(op, T(a), T(b)));
  SC_END
}

sc_err sc_binary_(int op, int mode, sc_tensor a, sc_tensor b) {
  SC_BEGIN
  sc::Mode m(mode);
  at::Tensor &x = T(a);
  const at::Tensor &y = T(b);
  switch (op) {
    case 0: x.add_(y); break;
    case 1: x.sub_(y); break;
    case 2: x.mul_(y); break;
    case 3: x.div_(y); break;
    default: x.copy_(binary(op, x, y));
  }
  SC_END
}

sc_err sc_binary_out(int op, int mode, sc_tensor a, sc_tensor b, sc_tensor out) {
  SC_BEGIN
  sc::Mode m(mode);
  at::Tensor &o = T(out);
  const at::Tensor &x = T(a), &y = T(b);
  switch (op) {
    case 0: at::add_out(o, x, y); break;
    case 1: at::sub_out(o, x, y); break;
    case 2: at::mul_out(o, x, y); break;
    case 3: at::div_out(o, x, y); break;
    case 5: at::maximum_out(o, x, y); break;
    case 6: at::minimum_out(o, x, y); break;
    case 15: at::matmul_out(o, x, y); break;
    case 16: at::bmm_out(o, x, y); break;
    case 17: at::mm_out(o, x, y); break;
    default: o.copy_(binary(op, x, y));
  }
  SC_END
}

sc_err sc_reduce(int op, int mode, sc_tensor a, const int64_t *dims, int ndims, int keepdim,
                 double p, sc_tensor *out) {
  SC_BEGIN
  sc::Mode m(mode);
  const at::Tensor &x = T(a);
  bool kd = keepdim != 0;
  bool all = ndims == 0;
  at::IntArrayRef d = sc::ints(dims, ndims);
  at::Tensor r;
  auto one = [&](const char *name) -> int64_t {
    if (ndims != 1) throw std::invalid_argument(std::string(name) + " reduces exactly one dim");
    return dims[0];
  };
  switch (op) {
    case 0: r = all ? (kd ? x.sum(c10::IntArrayRef{}, true) : x.sum()) : x.sum(d, kd); break;
    case 1: r = all ? x.mean() : x.mean(d, kd); break;
    case 2: r = all ? x.amax(c10::IntArrayRef{}, kd) : x.amax(d, kd); break;
    case 3: r = all ? x.amin(c10::IntArrayRef{}, kd) : x.amin(d, kd); break;
    case 4: r = all ? x.prod() : x.prod(one("prod"), kd); break;
    case 5:
      r = all ? x.var(p != 0) : at::var(x, d, p != 0, kd);
      break;
    case 6:
      r = all ? x.std(p != 0) : at::std(x, d, p != 0, kd);
      break;
    case 7: r = all ? at::norm(x, p) : at::norm(x, p, d, kd); break;
    case 8: {
      std::vector<int64_t> alld;
      if (all)
        for (int64_t i = 0; i < x.dim(); i++) alld.push_back(i);
      r = at::logsumexp(x, all ? at::IntArrayRef(alld) : d, kd);
      break;
    }
    case 9: r = all ? x.all() : x.all(one("all"), kd); break;
    case 10: r = all ? x.any() : x.any(one("any"), kd); break;
    case 11: r = all ? x.argmax() : x.argmax(one("argmax"), kd); break;
    case 12: r = all ? x.argmin() : x.argmin(one("argmin"), kd); break;
    case 13: r = all ? at::count_nonzero(x) : at::count_nonzero(x, d); break;
    default: throw std::invalid_argument("unknown reduction " + std::to_string(op));
  }
  *out = wrap(r);
  SC_END
}

sc_err sc_shape_op(int op, int mode, sc_tensor a, const int64_t *ints, int n, sc_tensor *out) {
  SC_BEGIN
  sc::Mode m(mode);
  const at::Tensor &x = T(a);
  at::IntArrayRef v = sc::ints(ints, n);
  auto need = [&](int k, const char *name) {
    if (n != k)
      throw std::invalid_argument(std::string(name) + " takes " + std::to_string(k) +
                                  " integer argument(s), got " + std::to_string(n));
  };
  at::Tensor r;
  switch (op) {
    case 0: r = x.reshape(v); break;
    case 1: r = x.permute(v); break;
    case 2: r = x.expand(v); break;
    case 3: r = n == 0 ? x.squeeze() : x.squeeze(ints[0]); break;
    case 4: need(1, "unsqueeze"); r = x.unsqueeze(ints[0]); break;
    case 5: need(2, "flatten"); r = x.flatten(ints[0], ints[1]); break;
    case 6: need(2, "transpose"); r = x.transpose(ints[0], ints[1]); break;
    case 7: r = x.repeat(v); break;
    case 8: r = x.flip(v); break;
    case 9: r = x.view(v); break;
    case 10: r = x.t(); break;
    case 11: need(2, "movedim"); r = x.movedim(ints[0], ints[1]); break;
    case 12: r = at::diag(x); break;
    case 13: need(1, "one_hot"); r = at::one_hot(x, ints[0]); break;
    case 14: need(1, "triu"); r = at::triu(x, ints[0]); break;
    default: throw std::invalid_argument("unknown shape op " + std::to_string(op));
  }
  *out = wrap(r);
  SC_END
}

sc_err sc_softmax(int log, int mode, sc_tensor a, int64_t dim, sc_tensor *out) {
  SC_BEGIN
  sc::Mode m(mode);
  *out = wrap(log ? at::log_softmax(T(a), dim) : at::softmax(T(a), dim));
  SC_END
}

sc_err sc_narrow(int mode, sc_tensor a, int64_t dim, int64_t start, int64_t length,
                 sc_tensor *out) {
  SC_BEGIN
  sc::Mode m(mode);
  *out = wrap(T(a).narrow(dim, start, length));
  SC_END
}

sc_err sc_select(int mode, sc_tensor a, int64_t dim, int64_t index, sc_tensor *out) {
  SC_BEGIN
  sc::Mode m(mode);
  *out = wrap(T(a).select(dim, index));
  SC_END
}

sc_err sc_index_select(int mode, sc_tensor a, int64_t dim, sc_tensor index, sc_tensor *out) {
  SC_BEGIN
  sc::Mode m(mode);
  *out = wrap(at::index_select(T(a), dim, T(index)));
  SC_END
}

sc_err sc_gather(int mode, sc_tensor a, int64_t dim, sc_tensor index, sc_tensor *out) {
  SC_BEGIN
  sc::Mode m(mode);
  *out = wrap(at::gather(T(a), dim, T(index)));
  SC_END
}

sc_err sc_masked_select(int mode, sc_tensor a, sc_tensor mask, sc_tensor *out) {
  SC_BEGIN
  sc::Mode m(mode);
  *out = wrap(at::masked_select(T(a), T(mask)));
  SC_END
}

sc_err sc_cat(int mode, const sc_tensor *ts, int n, int64_t dim, int stack, sc_tensor *out) {
  SC_BEGIN
  sc::Mode m(mode);
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (int i = 0; i < n; i++) v.push_back(T(ts[i]));
  *out = wrap(stack ? at::stack(v, dim) : at::cat(v, dim));
  SC_END
}

sc_err sc_where(int mode, sc_tensor cond, sc_tensor a, sc_tensor b, sc_tensor *out) {
  SC_BEGIN
  sc::Mode m(mode);
  *out = wrap(at::where(T(cond), T(a), T(b)));
  SC_END
}

sc_err sc_clamp_t(int mode, sc_tensor a, sc_tensor lo, sc_tensor hi, sc_tensor *out) {
  SC_BEGIN
  sc::Mode m(mode);
  *out = wrap(at::clamp(T(a), T(lo), T(hi)));
  SC_END
}

sc_err sc_copy_(sc_tensor dst, sc_tensor src) {
  SC_BEGIN
  at::NoGradGuard ng;
  T(dst).copy_(T(src));
  SC_END
}

sc_err sc_linear(int mode, sc_tensor x, sc_tensor w, sc_tensor b, sc_tensor *out) {
  SC_BEGIN
  sc::Mode m(mode);
  c10::optional<at::Tensor> bias;
  if (b != nullptr) bias = T(b);
  *out = wrap(at::linear(T(x), T(w), bias));
  SC_END
}

sc_err sc_conv2d(int mode, sc_tensor x, sc_tensor w, sc_tensor b, const int64_t *stride,
                 const int64_t *padding, const int64_t *dilation, int64_t groups,
                 sc_tensor *out) {
  SC_BEGIN
  sc::Mode m(mode);
  c10::optional<at::Tensor> bias;
  if (b != nullptr) bias = T(b);
  *out = wrap(at::conv2d(T(x), T(w), bias, sc::ints(stride, 2), sc::ints(padding, 2),
                         sc::ints(dilation, 2), groups));
  SC_END
}

sc_err sc_interpolate(int mode, sc_tensor x, int64_t oh, int64_t ow, int method,
                      int align_corners, int antialias, sc_tensor *out) {
  SC_BEGIN
  sc::Mode m(mode);
  const at::Tensor &in = T(x);
  if (in.dim() != 4)
    throw std::invalid_argument("interpolate expects [N,C,H,W], got " + c10::str(in.sizes()));
  std::vector<int64_t> size{oh, ow};
  bool ac = align_corners != 0;
  at::Tensor r;
  switch (method) {
    case 0: r = at::upsample_nearest2d(in, size); break;
    case 1:
      r = antialias ? at::_upsample_bilinear2d_aa(in, size, ac)
                    : at::upsample_bilinear2d(in, size, ac);
      break;
    case 2:
      r = antialias ? at::_upsample_bicubic2d_aa(in, size, ac)
                    : at::upsample_bicubic2d(in, size, ac);
      break;
    default: throw std::invalid_argument("unknown interpolation method");
  }
  *out = wrap(r);
  SC_END
}

sc_err sc_avg_pool2d(int mode, sc_tensor x, const int64_t *kernel, const int64_t *stride,
                     const int64_t *padding, int count_include_pad, sc_tensor *out) {
  SC_BEGIN
  sc::Mode m(mode);
  *out = wrap(at::avg_pool2d(T(x), sc::ints(kernel, 2), sc::ints(stride, 2),
                             sc::ints(padding, 2), false, count_include_pad != 0));
  SC_END
}

sc_err sc_pad(int mode, sc_tensor x, const int64_t *pads, int npads, int padmode, double value,
              sc_tensor *out) {
  SC_BEGIN
  sc::Mode m(mode);
  auto p = sc::ints(pads, npads);
  at::Tensor r;
  switch (padmode) {
    case 0: r = at::constant_pad_nd(T(x), p, value); break;
    case 1: r = at::reflection_pad2d(T(x), p); break;
    case 2: r = at::replication_pad2d(T(x), p); break;
    default: throw std::invalid_argument("unknown pad mode");
  }
  *out = wrap(r);
  SC_END
}

sc_err sc_topk(int mode, sc_tensor a, int64_t k, int64_t dim, int largest, int sorted,
               sc_tensor *values, sc_tensor *indices) {
  SC_BEGIN
  sc::Mode m(mode);
  auto r = at::topk(T(a), k, dim, largest != 0, sorted != 0);
  *values = wrap(std::get<0>(r));
  *indices = wrap(std::get<1>(r));
  SC_END
}

sc_err sc_sort(int mode, sc_tensor a, int64_t dim, int descending, sc_tensor *values,
               sc_tensor *indices) {
  SC_BEGIN
  sc::Mode m(mode);
  auto r = at::sort(T(a), dim, descending != 0);
  *values = wrap(std::get<0>(r));
  *indices = wrap(std::get<1>(r));
  SC_END
}

sc_err sc_kthvalue(int mode, sc_tensor a, int64_t k, int64_t dim, int keepdim,
                   sc_tensor *values, sc_tensor *indices) {
  SC_BEGIN
  sc::Mode m(mode);
  auto r = at::kthvalue(T(a), k, dim, keepdim != 0);
  *values = wrap(std::get<0>(r));
  *indices = wrap(std::get<1>(r));
  SC_END
}

sc_err sc_quantile(int mode, sc_tensor a, double q, int64_t dim, int keepdim, sc_tensor *out) {
  SC_BEGIN
  sc::Mode m(mode);
  c10::optional<int64_t> d;
  if (dim > -100) d = dim;
  *out = wrap(at::quantile(T(a), q, d, keepdim != 0, "linear"));
  SC_END
}

sc_err sc_max_dim(int mode, sc_tensor a, int64_t dim, int keepdim, int min, sc_tensor *values,
                  sc_tensor *indices) {
  SC_BEGIN
  sc::Mode m(mode);
  auto r = min ? at::min(T(a), dim, keepdim != 0) : at::max(T(a), dim, keepdim != 0);
  *values = wrap(std::get<0>(r));
  *indices = wrap(std::get<1>(r));
  SC_END
}

sc_err sc_eigh(sc_tensor a, sc_tensor *evals, sc_tensor *evecs) {
  SC_BEGIN
  at::NoGradGuard ng;
  auto r = at::linalg_eigh(T(a), "L");
  *evals = wrap(std::get<0>(r));
  *evecs = wrap(std::get<1>(r));
  SC_END
}

sc_err sc_svd(sc_tensor a, int full_matrices, sc_tensor *u, sc_tensor *s, sc_tensor *vh) {
  SC_BEGIN
  at::NoGradGuard ng;
  auto r = at::linalg_svd(T(a), full_matrices != 0);
  *u = wrap(std::get<0>(r));
  *s = wrap(std::get<1>(r));
  *vh = wrap(std::get<2>(r));
  SC_END
}

sc_err sc_pinv(sc_tensor a, sc_tensor *out) {
  SC_BEGIN
  at::NoGradGuard ng;
  *out = wrap(at::linalg_pinv(T(a)));
  SC_END
}

// ---- autograd ----

sc_err sc_set_requires_grad(sc_tensor t, int on) {
  SC_BEGIN
  T(t).requires_grad_(on != 0);
  SC_END
}

sc_err sc_backward(sc_tensor t, sc_tensor grad, int retain_graph) {
  SC_BEGIN
  c10::AutoGradMode g(true);
  at::Tensor &x = T(t);
  if (!x.requires_grad())
    throw std::invalid_argument("backward: tensor does not require grad and has no grad_fn");
  at::Tensor gr;
  if (grad != nullptr) gr = T(grad);
  x.backward(gr, retain_graph != 0);
  SC_END
}

sc_err sc_grad(sc_tensor t, sc_tensor *out) {
  SC_BEGIN
  const at::Tensor &g = T(t).grad();
  *out = g.defined() ? wrap(g) : nullptr;
  SC_END
}

sc_err sc_zero_grad(sc_tensor t, int set_to_none) {
  SC_BEGIN
  at::Tensor &x = T(t);
  at::Tensor &g = x.mutable_grad();
  if (g.defined()) {
    if (set_to_none) {
      g.reset();
    } else {
      g = g.detach();
      g.zero_();
    }
  }
  SC_END
}

sc_err sc_clip_grad_norm(const sc_tensor *params, int n, double max_norm, double norm_type,
                         double *total_norm) {
  SC_BEGIN
  at::NoGradGuard ng;
  std::vector<at::Tensor> grads;
  for (int i = 0; i < n; i++) {
    const at::Tensor &g = T(params[i]).grad();
    if (g.defined()) grads.push_back(g);
  }
  if (grads.empty()) {
    *total_norm = 0;
    return nullptr;
  }
  at::Tensor total;
  if (std::isinf(norm_type)) {
    std::vector<at::Tensor> m;
    for (auto &g : grads) m.push_back(g.abs().max());
    total = at::stack(m).max();
  } else {
    std::vector<at::Tensor> norms;
    for (auto &g : grads) norms.push_back(at::norm(g, norm_type));
    total = at::norm(at::stack(norms), norm_type);
  }
  double tn = total.item<double>();
  *total_norm = tn;
  double coef = max_norm / (tn + 1e-6);
  if (coef < 1) {
    for (auto &g : grads) g.mul_(coef);
  }
  SC_END
}

// ---- generators ----

sc_err sc_gen_new(uint64_t seed, int dev_type, int dev_index, sc_gen *out) {
  SC_BEGIN
  at::Generator g;
  if (dev_type == SC_CPU) {
    g = at::make_generator<at::CPUGeneratorImpl>(seed);
  } else {
    g = at::globalContext().defaultGenerator(sc::device(dev_type, dev_index)).clone();
    std::lock_guard<std::mutex> lock(g.mutex());
    g.set_current_seed(seed);
  }
  *out = new sc_gen_s{g};
  SC_END
}

void sc_gen_free(sc_gen g) { delete g; }

sc_err sc_gen_get_state(sc_gen g, sc_tensor *out) {
  SC_BEGIN
  std::lock_guard<std::mutex> lock(g->gen.mutex());
  *out = wrap(g->gen.get_state());
  SC_END
}

sc_err sc_gen_set_state(sc_gen g, sc_tensor state) {
  SC_BEGIN
  std::lock_guard<std::mutex> lock(g->gen.mutex());
  g->gen.set_state(T(state));
  SC_END
}

sc_err sc_default_gen_state(int get, sc_tensor *state) {
  SC_BEGIN
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  if (get) {
    *state = wrap(gen.get_state());
  } else {
    gen.set_state(T(*state));
  }
  SC_END
}

}  // extern "C"
