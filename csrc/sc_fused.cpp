// sc_fused.cpp - the fused kernels (Gumbel-Softmax, min-max normalisation, Gaussian
// blur), each with an explicit backward, and the caching CPU allocator.
#include <ATen/Version.h>
#include <torch/version.h>
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <atomic>
#include <cmath>
#include <map>
#include <mutex>
#include <vector>
#include <algorithm>
#include <memory>
#include <limits>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "sc_common.h"

using sc::T;
using sc::wrap;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

// ---------------- Gumbel-Softmax ----------------
//
// Forward fuses the noise, the shift and the temperature into two buffers (the uniform
// sample is turned into Gumbel noise in place, the logits are added in place); backward is
// the softmax Jacobian-vector product divided by tau. With hard=true the forward returns the
// one-hot argmax and the backward is the soft one (straight-through estimator).
struct GumbelSoftmax : public torch::autograd::Function<GumbelSoftmax> {
  static at::Tensor forward(AutogradContext *ctx, const at::Tensor &logits, double tau,
                            double eps, bool hard, c10::optional<at::Generator> gen) {
    if (!(tau > 0)) throw std::invalid_argument("gumbel_softmax: tau must be > 0");
    at::Tensor g = at::empty_like(logits, at::MemoryFormat::Contiguous);
    g.uniform_(0.0, 1.0, gen);
    // g = -log(-log(u + eps) + eps)
    g.add_(eps).log_().neg_().add_(eps).log_().neg_();
    g.add_(logits).div_(tau);
    at::Tensor y = at::softmax(g, -1);
    ctx->save_for_backward({y});
    ctx->saved_data["tau"] = tau;
    if (!hard) return y;
    at::Tensor idx = y.argmax(-1, true);
    return at::zeros_like(y).scatter_(-1, idx, 1.0);
  }
  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    at::Tensor y = ctx->get_saved_variables()[0];
    double tau = ctx->saved_data["tau"].toDouble();
    const at::Tensor &gy = grads[0];
    at::Tensor s = (gy * y).sum(-1, true);
    at::Tensor gl = (gy - s).mul_(y).div_(tau);
    return {gl, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// ---------------- min-max normalisation ----------------
//
// y = (x - m) / max(M - m, eps), optionally clamped to [0,1], with m, M the min and max
// either over everything (global), per image and channel over H x W (x is [B,H,W,C]), or
// given constants. The backward includes the paths through m and M, with the gradient of
// a min/max split evenly between tied elements (as LibTorch's amin/amax do).
// affine_cpu writes (x - mn) / d (clamped to [0,1] when asked) in one parallel pass over a
// contiguous float32 tensor: the composed sub + div + clamp reads and writes the whole cube
// two or three times, which on these machines costs more than the arithmetic.
at::Tensor affine_cpu(const at::Tensor &xv, const at::Tensor &mn, const at::Tensor &d, bool per_image,
                      bool clamp) {
  at::Tensor y = at::empty_like(xv);
  const float *x = xv.data_ptr<float>();
  float *out = y.data_ptr<float>();
  if (!per_image) {
    const float lo = mn.item<float>(), inv = 1.0f / d.item<float>();
    at::parallel_for(0, xv.numel(), 1 << 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; i++) {
        float v = (x[i] - lo) * inv;
        if (clamp) v = v < 0.f ? 0.f : (v > 1.f ? 1.f : v);
        out[i] = v;
      }
    });
    return y;
  }
  // xv is [B, P, C]; mn and d are [B, 1, C]
  const int64_t B = xv.size(0), P = xv.size(1), C = xv.size(2);
  at::Tensor lo = mn.contiguous().to(at::kFloat), inv = d.reciprocal().contiguous().to(at::kFloat);
  const float *lp = lo.data_ptr<float>(), *ip = inv.data_ptr<float>();
  at::parallel_for(0, B * P, std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(C, 1)), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; r++) {
      const int64_t img = r / P;
      const float *l = lp + img * C, *iv = ip + img * C;
      const float *xr = x + r * C;
      float *yr = out + r * C;
      for (int64_t c = 0; c < C; c++) {
        float v = (xr[c] - l[c]) * iv[c];
        if (clamp) v = v < 0.f ? 0.f : (v > 1.f ? 1.f : v);
        yr[c] = v;
      }
    }
  });
  return y;
}

struct MinMax : public torch::autograd::Function<MinMax> {
  static at::Tensor forward(AutogradContext *ctx, const at::Tensor &x, bool per_image,
                            bool use_given, double lo, double hi, double eps, bool clamp) {
    at::Tensor xv, mn, mx;
    if (per_image) {
      if (x.dim() != 4)
        throw std::invalid_argument("minmax: per-image mode expects [B,H,W,C], got " +
                                    c10::str(x.sizes()));
      xv = x.reshape({x.size(0), x.size(1) * x.size(2), x.size(3)});
      auto r = at::aminmax(xv, 1, true);
      mn = std::get<0>(r);
      mx = std::get<1>(r);
    } else if (use_given) {
      xv = x;
      mn = at::scalar_tensor(lo, x.options());
      mx = at::scalar_tensor(hi, x.options());
    } else {
      xv = x;
      auto r = at::aminmax(x);
      mn = std::get<0>(r);
      mx = std::get<1>(r);
    }
    at::Tensor d = (mx - mn).clamp_min_(eps);
    at::Tensor y;
    if (xv.is_cpu() && xv.scalar_type() == at::kFloat && xv.is_contiguous()) {
      y = affine_cpu(xv, mn, d, per_image, clamp);
    } else {
      y = at::sub(xv, mn);
      y.div_(d);
      if (clamp) y.clamp_(0.0, 1.0);
    }
    ctx->save_for_backward({x, mn, mx, d});
    ctx->saved_data["per_image"] = per_image;
    ctx->saved_data["use_given"] = use_given;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["clamp"] = clamp;
    return per_image ? y.view(x.sizes()) : y;
  }

  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    at::Tensor x = saved[0], mn = saved[1], mx = saved[2], d = saved[3];
    bool per_image = ctx->saved_data["per_image"].toBool();
    bool use_given = ctx->saved_data["use_given"].toBool();
    double eps = ctx->saved_data["eps"].toDouble();
    bool clamp = ctx->saved_data["clamp"].toBool();
    at::Tensor xv = per_image ? x.reshape({x.size(0), x.size(1) * x.size(2), x.size(3)}) : x;
    at::Tensor g = per_image ? grads[0].reshape(xv.sizes()) : grads[0];
    at::Tensor y = (xv - mn) / d;
    if (clamp) g = g * ((y >= 0) & (y <= 1));
    at::Tensor gx = g / d;
    if (!use_given) {
      std::vector<int64_t> dims;
      if (per_image) {
        dims = {1};
      } else {
        for (int64_t i = 0; i < xv.dim(); i++) dims.push_back(i);
      }
      bool kd = per_image;
      at::Tensor open = (mx - mn) >= eps;  // clamp_min passes the gradient here
      at::Tensor gsum = g.sum(dims, kd);
      at::Tensor gy = (g * y).sum(dims, kd);
      // dL/dM = -sum(g*y)/d ; dL/dm = sum(g*(y-1))/d, when M - m >= eps;
      // otherwise d is the constant eps: dL/dM = 0, dL/dm = -sum(g)/d.
      at::Tensor dM = at::where(open, -gy / d, at::zeros_like(gy));
      at::Tensor dm = at::where(open, (gy - gsum) / d, -gsum / d);
      at::Tensor atmin = (xv == mn).to(x.scalar_type());
      at::Tensor atmax = (xv == mx).to(x.scalar_type());
      at::Tensor nmin = atmin.sum(dims, kd), nmax = atmax.sum(dims, kd);
      gx = gx + atmin * (dm / nmin) + atmax * (dM / nmax);
    }
    if (per_image) gx = gx.view(x.sizes());
    return {gx, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor()};
  }
};

// ---------------- Gaussian blur ----------------

// pad_map lists, for every padded position p in [-r, n + r), the source index it reads
// (mode 1 reflect, 2 mirror, 3 replicate), or -1 for a zero (mode 0).
std::vector<int64_t> pad_map(int64_t n, int64_t r, int padmode) {
  std::vector<int64_t> m(n + 2 * r);
  for (int64_t k = 0; k < n + 2 * r; k++) {
    int64_t i = k - r;
    if (padmode == 0) {
      m[k] = (i < 0 || i >= n) ? -1 : i;
      continue;
    }
    int64_t j = 0;
    switch (padmode) {
      case 1: {  // reflect: d c b a | a b c d | d c b a (scipy's default)
        int64_t p = 2 * n, q = ((i % p) + p) % p;
        j = q < n ? q : p - 1 - q;
        break;
      }
      case 2: {  // mirror: d c b | a b c d | c b a
        if (n == 1) break;
        int64_t p = 2 * n - 2, q = ((i % p) + p) % p;
        j = q < n ? q : p - q;
        break;
      }
      case 3: j = i < 0 ? 0 : (i >= n ? n - 1 : i); break;  // replicate
      default: throw std::invalid_argument("unknown padding mode");
    }
    m[k] = j;
  }
  return m;
}

// pad_index is pad_map as an index tensor for the non-zero paddings (index_select path).
at::Tensor pad_index(int64_t n, int64_t r, int padmode, const at::TensorOptions &o) {
  return at::tensor(pad_map(n, r, padmode), o.dtype(at::kLong));
}

// blur_cpu applies the separable kernel k (odd length) with padding padmode to each [H,W]
// plane of a contiguous float32 [N,1,H,W] tensor, in two direct passes. For the small
// 1-channel maps of the detector this is several times faster than conv2d, which takes its
// generic im2col path for one channel; and every output is a sum over the taps in one fixed
// order, so an image's result never depends on the other images of the batch or on the
// thread count (conv2d picks its algorithm by batch size).
at::Tensor blur_cpu(const at::Tensor &x, const std::vector<float> &k, int padmode) {
  const int64_t N = x.size(0), H = x.size(2), W = x.size(3), r = (int64_t(k.size()) - 1) / 2;
  const std::vector<int64_t> mh = pad_map(H, r, padmode), mw = pad_map(W, r, padmode);
  at::Tensor tmp = at::empty_like(x), y = at::empty_like(x);
  const float *in = x.data_ptr<float>();
  float *t = tmp.data_ptr<float>(), *out = y.data_ptr<float>();
  const float *kk = k.data();
  // vertical pass: rows are independent
  at::parallel_for(0, N * H, 16, [&](int64_t b, int64_t e) {
    for (int64_t row = b; row < e; row++) {
      const int64_t n = row / H, i = row % H;
      float *dst = t + row * W;
      std::fill(dst, dst + W, 0.f);
      for (int64_t j = -r; j <= r; j++) {
        const int64_t src = mh[i + j + r];
        if (src < 0) continue;
        const float w = kk[j + r];
        const float *srow = in + (n * H + src) * W;
        for (int64_t c = 0; c < W; c++) dst[c] += w * srow[c];
      }
    }
  });
  // horizontal pass
  at::parallel_for(0, N * H, 16, [&](int64_t b, int64_t e) {
    for (int64_t row = b; row < e; row++) {
      const float *srow = t + row * W;
      float *dst = out + row * W;
      for (int64_t c = 0; c < W; c++) {
        float acc = 0.f;
        for (int64_t j = -r; j <= r; j++) {
          const int64_t src = mw[c + j + r];
          if (src >= 0) acc += kk[j + r] * srow[src];
        }
        dst[c] = acc;
      }
    }
  });
  return y;
}

// blur_cpu_adjoint is the transpose of blur_cpu (its backward): each output's weighted taps
// are scattered back to the pixels they read. Rows of the horizontal pass are independent;
// the vertical pass runs one plane per task, in a fixed order, so it is deterministic too.
at::Tensor blur_cpu_adjoint(const at::Tensor &g, const std::vector<float> &k, int padmode) {
  const int64_t N = g.size(0), H = g.size(2), W = g.size(3), r = (int64_t(k.size()) - 1) / 2;
  const std::vector<int64_t> mh = pad_map(H, r, padmode), mw = pad_map(W, r, padmode);
  at::Tensor tmp = at::zeros_like(g), dx = at::zeros_like(g);
  const float *gin = g.data_ptr<float>();
  float *t = tmp.data_ptr<float>(), *out = dx.data_ptr<float>();
  const float *kk = k.data();
  at::parallel_for(0, N * H, 16, [&](int64_t b, int64_t e) {
    for (int64_t row = b; row < e; row++) {
      const float *grow = gin + row * W;
      float *dst = t + row * W;
      for (int64_t c = 0; c < W; c++) {
        for (int64_t j = -r; j <= r; j++) {
          const int64_t src = mw[c + j + r];
          if (src >= 0) dst[src] += kk[j + r] * grow[c];
        }
      }
    }
  });
  at::parallel_for(0, N, 1, [&](int64_t b, int64_t e) {
    for (int64_t n = b; n < e; n++) {
      for (int64_t i = 0; i < H; i++) {
        const float *trow = t + (n * H + i) * W;
        for (int64_t j = -r; j <= r; j++) {
          const int64_t src = mh[i + j + r];
          if (src < 0) continue;
          const float w = kk[j + r];
          float *dst = out + (n * H + src) * W;
          for (int64_t c = 0; c < W; c++) dst[c] += w * trow[c];
        }
      }
    }
  });
  return dx;
}

// BlurCPU makes blur_cpu differentiable. With zero padding and a symmetric kernel the blur
// is its own adjoint, so the backward pass is the same blur of the gradient; other paddings
// fold the border back and use the explicit adjoint.
struct BlurCPU : public torch::autograd::Function<BlurCPU> {
  static at::Tensor forward(AutogradContext *ctx, const at::Tensor &x, std::vector<float> k, int64_t padmode) {
    ctx->saved_data["k"] = std::vector<double>(k.begin(), k.end());
    ctx->saved_data["pad"] = padmode;
    return blur_cpu(x, k, static_cast<int>(padmode));
  }
  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    auto kd = ctx->saved_data["k"].toDoubleVector();
    int pad = static_cast<int>(ctx->saved_data["pad"].toInt());
    std::vector<float> k(kd.begin(), kd.end());
    at::Tensor g = grads[0].contiguous();
    at::Tensor dx = pad == 0 ? blur_cpu(g, k, 0) : blur_cpu_adjoint(g, k, pad);
    return {dx, at::Tensor(), at::Tensor()};
  }
};

at::Tensor gaussian_blur(const at::Tensor &in, double sigma, int64_t radius, int padmode) {
  if (!(sigma > 0)) throw std::invalid_argument("gaussian_blur: sigma must be > 0");
  at::Tensor x;
  bool three = in.dim() == 3;
  if (three) {
    x = in.unsqueeze(1);
  } else if (in.dim() == 4 && in.size(1) == 1) {
    x = in;
  } else {
    throw std::invalid_argument("gaussian_blur expects [B,H,W] or [B,1,H,W], got " +
                                c10::str(in.sizes()));
  }
  int64_t r = radius > 0 ? radius : static_cast<int64_t>(std::floor(3 * sigma)) + 1;
  std::vector<double> k(2 * r + 1);
  double s = 0;
  for (int64_t i = -r; i <= r; i++) s += (k[i + r] = std::exp(-0.5 * (i * i) / (sigma * sigma)));
  for (auto &v : k) v /= s;
  at::Tensor kt = at::tensor(k, at::TensorOptions().dtype(at::kDouble)).to(x.options());
  at::Tensor kv = kt.view({1, 1, 2 * r + 1, 1}), kh = kt.view({1, 1, 1, 2 * r + 1});
  int64_t H = x.size(2), W = x.size(3);
  if (padmode < 0 || padmode > 3) throw std::invalid_argument("gaussian_blur: unknown padding mode");
  if (x.is_cpu() && x.scalar_type() == at::kFloat) {
    std::vector<float> kf(k.begin(), k.end());
    at::Tensor y = BlurCPU::apply(x.contiguous(), kf, static_cast<int64_t>(padmode));
    return three ? y.squeeze(1) : y;
  }
  if (padmode == 0) {
    at::Tensor y = at::conv2d(x, kv, c10::optional<at::Tensor>(), at::IntArrayRef{1, 1}, at::IntArrayRef{r, 0});
    y = at::conv2d(y, kh, c10::optional<at::Tensor>(), at::IntArrayRef{1, 1}, at::IntArrayRef{0, r});
    return three ? y.squeeze(1) : y;
  }
  auto o = at::TensorOptions().device(x.device());
  at::Tensor y = at::index_select(x, 2, pad_index(H, r, padmode, o));
  y = at::conv2d(y, kv);
  y = at::index_select(y, 3, pad_index(W, r, padmode, o));
  y = at::conv2d(y, kh);
  return three ? y.squeeze(1) : y;
}

// ---------------- caching CPU allocator ----------------
//
// On the project's machines a fresh large tensor costs more in page faults than the
// arithmetic on it (glibc returns big blocks to the kernel at once). This allocator keeps
// freed blocks of 1 MiB and more, rounded up to 1 MiB, for reuse, up to a cap.

constexpr size_t kBig = 1 << 20;
constexpr size_t kCap = size_t(4) << 30;

struct Cache {
  std::mutex mu;
  std::multimap<size_t, void *> free;  // rounded size -> block
  std::map<void *, size_t> sizes;      // every block this cache handed out
  size_t cached = 0;
  std::atomic<int64_t> hits{0}, misses{0};
};
Cache &cache() {
  static Cache *c = new Cache();  // never destroyed: tensors may die after static teardown
  return *c;
}

void *raw_alloc(size_t n) {
  void *p = nullptr;
  if (posix_memalign(&p, 64, n == 0 ? 64 : n) != 0 || p == nullptr)
    throw std::runtime_error("caching allocator: out of memory allocating " +
                             std::to_string(n) + " bytes");
  return p;
}

void cached_free(void *p) {
  if (p == nullptr) return;
  Cache &c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  auto it = c.sizes.find(p);
  if (it == c.sizes.end()) {
    std::free(p);
    return;
  }
  size_t n = it->second;
  if (c.cached + n > kCap) {
    c.sizes.erase(it);
    std::free(p);
    return;
  }
  c.cached += n;
  c.free.emplace(n, p);
}

void *cached_alloc(size_t n) {
  if (n < kBig) return raw_alloc(n);
  size_t r = (n + kBig - 1) / kBig * kBig;
  Cache &c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.free.find(r);
    if (it != c.free.end()) {
      void *p = it->second;
      c.free.erase(it);
      c.cached -= r;
      c.hits++;
      return p;
    }
  }
  c.misses++;
  void *p = raw_alloc(r);
  std::lock_guard<std::mutex> lock(c.mu);
  c.sizes[p] = r;
  return p;
}

void cached_deleter(void *p) { cached_free(p); }

// c10::Allocator changed across LibTorch versions (allocate() lost its const and copy_data()
// became pure virtual in 2.x). Declaring both allocate() variants and copy_data() without
// `override` lets whichever the base class declares be overridden, so this compiles against
// 1.13 and 2.x alike.
struct CachingCPUAllocator final : public c10::Allocator {
  c10::DataPtr allocate(size_t n) const {
    void *p = cached_alloc(n);
    return {p, p, &cached_deleter, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DataPtr allocate(size_t n) { return static_cast<const CachingCPUAllocator *>(this)->allocate(n); }
  c10::DeleterFnPtr raw_deleter() const override { return &cached_deleter; }
  void copy_data(void *dest, const void *src, std::size_t count) const {
    std::memcpy(dest, src, count);
  }
};

CachingCPUAllocator g_caching;

// ---------------- 1x1 convolution (the reducers' band mixing) ----------------
//
// conv1x1 is conv2d with a [O,C,1,1] kernel on a [B,C,H,W] tensor (a channels-last view
// of the cube). LibTorch 1.13's conv2d sends a float32 CPU 1x1 convolution with a batch
// under 16 at one thread to its generic im2col + BLAS path, which with Debian's reference
// BLAS is 10-20x slower than oneDNN; here a float32 CPU call goes to oneDNN directly
// (the same kernel conv2d picks at two threads), everything else to conv2d. Autograd
// goes through LibTorch's own derivative of mkldnn_convolution.
bool conv1x1_onednn(const at::Tensor &x, const at::Tensor &w) {
  return x.is_cpu() && w.is_cpu() && x.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat &&
         x.dim() == 4 && w.dim() == 4 && w.size(2) == 1 && w.size(3) == 1 && at::hasMKLDNN() &&
         at::globalContext().userEnabledMkldnn();
}

at::Tensor conv1x1(const at::Tensor &x, const at::Tensor &w, const c10::optional<at::Tensor> &b) {
  if (w.dim() != 4 || w.size(2) != 1 || w.size(3) != 1)
    throw std::invalid_argument("conv1x1: weight must be [O,C,1,1], got " + c10::str(w.sizes()));
  if (x.dim() != 4 || x.size(1) != w.size(1))
    throw std::invalid_argument("conv1x1: input must be [B," + std::to_string(w.size(1)) + ",H,W], got " +
                                c10::str(x.sizes()));
  if (conv1x1_onednn(x, w)) {
    c10::optional<at::Tensor> bias;
    if (b.has_value() && b->defined()) bias = b->to(at::kFloat);
    return at::mkldnn_convolution(x, w.contiguous(), bias, {0, 0}, {1, 1}, {1, 1}, 1);
  }
  return at::conv2d(x, w, b);
}

// ---------------- fused DRCNN forward (inference) ----------------
//
// The mixer's chain of 1x1 layers (61 -> 16 -> 8 -> 3 by default) with LeakyReLU between
// them, in one pass over the channels-last cube: each tile of pixels goes through every
// layer in registers and small scratch buffers, so the cube is read once and only the
// 3-channel result is written (the layer-by-layer form writes and re-reads the 16- and
// 8-channel intermediates). The kernel is compiled twice, for AVX2+FMA and for the baseline
// ISA, and picked at run time. Forward only: training takes the autograd path.
}  // namespace

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define SC_MIX_AVX2 1
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define SC_MIX_VW 8
namespace sc_mix_avx2 {
#include "sc_mix_kernel.h"
}  // namespace sc_mix_avx2
#undef SC_MIX_VW
#pragma GCC pop_options
#endif
#define SC_MIX_VW 4
namespace sc_mix_base {
#include "sc_mix_kernel.h"
}  // namespace sc_mix_base
#undef SC_MIX_VW

namespace {

bool mix_use_avx2() {
#ifdef SC_MIX_AVX2
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
#else
  return false;
#endif
}

at::Tensor mix_chain(const at::Tensor &x0, const std::vector<at::Tensor> &ws, const std::vector<at::Tensor> &bs,
                     double slope, bool act_hidden, bool act_last) {
  const int nl = static_cast<int>(ws.size());
  if (nl < 1) throw std::invalid_argument("mix_chain: no layers");
  if (x0.dim() != 4) throw std::invalid_argument("mix_chain: input must be [B,H,W,C], got " + c10::str(x0.sizes()));
  if (!x0.is_cpu() || x0.scalar_type() != at::kFloat)
    throw std::invalid_argument("mix_chain: input must be a float32 CPU tensor, got " + c10::str(x0.scalar_type()) +
                                " on " + x0.device().str());
  bool needs_grad = x0.requires_grad();
  for (const auto &w : ws) needs_grad = needs_grad || w.requires_grad();
  for (const auto &b : bs) needs_grad = needs_grad || (b.defined() && b.requires_grad());
  if (needs_grad && at::GradMode::is_enabled())
    throw std::invalid_argument("mix_chain: forward only; call it with gradients off");
  const at::Tensor x = x0.contiguous();
  const long C = x.size(3), N = x.size(0) * x.size(1) * x.size(2);
  std::vector<at::Tensor> wts(nl), bps(nl);
  std::vector<const float *> wp(nl), bp(nl);
  std::vector<long> in(nl), out(nl), op(nl);
  std::unique_ptr<bool[]> act(new bool[nl]);
  long prev = C, widest = 8;
  for (int l = 0; l < nl; l++) {
    const at::Tensor &w = ws[l];
    if (!(w.dim() == 2 || (w.dim() == 4 && w.size(2) == 1 && w.size(3) == 1)) || w.size(1) != prev)
      throw std::invalid_argument("mix_chain: layer " + std::to_string(l) + " weight must be [O," +
                                  std::to_string(prev) + ",1,1], got " + c10::str(w.sizes()));
    in[l] = prev;
    out[l] = w.size(0);
    op[l] = (out[l] + 7) / 8 * 8;
    widest = std::max(widest, op[l]);
    at::Tensor w2 = w.detach().reshape({out[l], in[l]}).to(at::kFloat).cpu();
    at::Tensor wt = at::zeros({in[l], op[l]}, at::kFloat);
    wt.narrow(1, 0, out[l]).copy_(w2.t());
    at::Tensor bb = at::zeros({op[l]}, at::kFloat);
    if (l < static_cast<int>(bs.size()) && bs[l].defined()) {
      if (bs[l].numel() != out[l])
        throw std::invalid_argument("mix_chain: layer " + std::to_string(l) + " bias must have " +
                                    std::to_string(out[l]) + " entries, got " + c10::str(bs[l].sizes()));
      bb.narrow(0, 0, out[l]).copy_(bs[l].detach().reshape({out[l]}).to(at::kFloat).cpu());
    }
    wts[l] = wt;
    bps[l] = bb;
    wp[l] = wt.data_ptr<float>();
    bp[l] = bb.data_ptr<float>();
    act[l] = (l < nl - 1) ? act_hidden : act_last;
    prev = out[l];
  }
  if (x.size(3) != in[0])
    throw std::invalid_argument("mix_chain: input has " + std::to_string(x.size(3)) + " channels, layer 0 wants " +
                                std::to_string(in[0]));
  const long O = out[nl - 1];
  at::Tensor y = at::empty({x.size(0), x.size(1), x.size(2), O}, x.options());
  const float *xp = x.data_ptr<float>();
  float *yp = y.data_ptr<float>();
  const bool avx2 = mix_use_avx2();
  const float sl = static_cast<float>(slope);
  constexpr long tile = 64;
  const long ntiles = (N + tile - 1) / tile;
  at::parallel_for(0, ntiles, 64, [&](int64_t tb, int64_t te) {
    std::vector<float> a(tile * widest), b(tile * widest);
    for (int64_t t = tb; t < te; t++) {
      const long p0 = t * tile, P = std::min(tile, N - p0);
#ifdef SC_MIX_AVX2
      if (avx2) {
        sc_mix_avx2::mix_tile(xp + p0 * C, C, P, nl, wp.data(), bp.data(), in.data(), out.data(), op.data(),
                              act.get(), sl, a.data(), b.data(), yp + p0 * O);
        continue;
      }
#endif
      sc_mix_base::mix_tile(xp + p0 * C, C, P, nl, wp.data(), bp.data(), in.data(), out.data(), op.data(), act.get(),
                            sl, a.data(), b.data(), yp + p0 * O);
    }
  });
  return y;
}

// ---------------- detector pre-processing (inference) ----------------
//
// clip_preprocess is the detector node's pre-processing of rgb [B,H,W,3] float32 on the CPU
// with fewer passes over memory: per image the value range (max > 1 means [0,255]: that
// image is scaled by 1/255, the factor computed in float32 as the composed ops do), the
// scale, the clamp to [0,1] and the BHWC -> BCHW transpose in one pass; the antialiased
// bicubic resize to S x S (LibTorch's own kernel, skipped when H = W = S); CLIP normalisation
// (x - mean_c) / std_c in place. Every element gets the same float operations in the same
// order as the composed path (amax, mul, clamp, permute, interpolate, sub, div), so the
// result is the same bits. Forward only: with gradients on the node composes the ops.
at::Tensor clip_preprocess(const at::Tensor &rgb0, int64_t S, const at::Tensor &mean0, const at::Tensor &std0) {
  if (rgb0.dim() != 4 || rgb0.size(3) != 3)
    throw std::invalid_argument("clip_preprocess: rgb must be [B,H,W,3], got " + c10::str(rgb0.sizes()));
  if (!rgb0.is_cpu() || rgb0.scalar_type() != at::kFloat)
    throw std::invalid_argument("clip_preprocess: rgb must be a float32 CPU tensor, got " +
                                c10::str(rgb0.scalar_type()) + " on " + rgb0.device().str());
  if (S < 1) throw std::invalid_argument("clip_preprocess: image size must be >= 1, got " + std::to_string(S));
  if (mean0.numel() != 3 || std0.numel() != 3)
    throw std::invalid_argument("clip_preprocess: mean and std must have 3 entries, got " + c10::str(mean0.sizes()) +
                                " and " + c10::str(std0.sizes()));
  if (rgb0.requires_grad() && at::GradMode::is_enabled())
    throw std::invalid_argument("clip_preprocess: forward only; call it with gradients off");
  const at::Tensor rgb = rgb0.contiguous();
  const at::Tensor mean = mean0.detach().to(at::kFloat).cpu().contiguous().view({3});
  const at::Tensor sd = std0.detach().to(at::kFloat).cpu().contiguous().view({3});
  const int64_t B = rgb.size(0), H = rgb.size(1), W = rgb.size(2), HW = H * W;
  const float *x = rgb.data_ptr<float>();
  // per-image factor: 1, or 1 - (1 - 1/255) for an image whose max exceeds 1
  std::vector<float> factor(B);
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; b++) {
      const float *xb = x + b * HW * 3;
      float mx = -std::numeric_limits<float>::infinity();
      bool nan = false;
      for (int64_t i = 0; i < HW * 3; i++) {
        const float v = xb[i];
        nan = nan || std::isnan(v);
        mx = v > mx ? v : mx;
      }
      const float big = (!nan && mx > 1.f) ? 1.f : 0.f;  // amax propagates NaN; NaN > 1 is false
      factor[b] = 1.f - big * static_cast<float>(1 - 1.0 / 255);
    }
  });
  at::Tensor y = at::empty({B, 3, H, W}, rgb.options());
  float *yp = y.data_ptr<float>();
  at::parallel_for(0, B * H, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const int64_t b = r / H, h = r % H;
      const float f = factor[b];
      const float *src = x + r * W * 3;
      float *d0 = yp + (b * 3 + 0) * HW + h * W, *d1 = yp + (b * 3 + 1) * HW + h * W,
            *d2 = yp + (b * 3 + 2) * HW + h * W;
      for (int64_t w = 0; w < W; w++) {
        float v0 = src[3 * w] * f, v1 = src[3 * w + 1] * f, v2 = src[3 * w + 2] * f;
        // clamp as at::clamp does: NaN stays NaN
        d0[w] = std::isnan(v0) ? v0 : std::min(std::max(v0, 0.f), 1.f);
        d1[w] = std::isnan(v1) ? v1 : std::min(std::max(v1, 0.f), 1.f);
        d2[w] = std::isnan(v2) ? v2 : std::min(std::max(v2, 0.f), 1.f);
      }
    }
  });
  if (H != S || W != S) y = at::_upsample_bicubic2d_aa(y, {S, S}, false);
  y = y.contiguous();
  float *op = y.data_ptr<float>();
  const float *mp = mean.data_ptr<float>(), *sp = sd.data_ptr<float>();
  const int64_t SS = y.size(2) * y.size(3);
  at::parallel_for(0, B * 3, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; p++) {
      const float m = mp[p % 3], s = sp[p % 3];
      float *plane = op + p * SS;
      for (int64_t i = 0; i < SS; i++) plane[i] = (plane[i] - m) / s;
    }
  });
  return y;
}

}  // namespace

extern "C" {

sc_err sc_gumbel_softmax(int mode, sc_tensor logits, double tau, double eps, int hard,
                         sc_gen gen, sc_tensor *out) {
  SC_BEGIN
  sc::Mode m(mode);
  c10::optional<at::Generator> g;
  if (gen != nullptr) g = gen->gen;
  *out = wrap(GumbelSoftmax::apply(T(logits), tau, eps, hard != 0, g));
  SC_END
}

sc_err sc_minmax(int mode, sc_tensor x, int per_image, int use_given, double lo, double hi,
                 double eps, int clamp, sc_tensor *out) {
  SC_BEGIN
  sc::Mode m(mode);
  if (!(eps > 0)) throw std::invalid_argument("minmax: eps must be > 0");
  *out = wrap(MinMax::apply(T(x), per_image != 0, use_given != 0, lo, hi, eps, clamp != 0));
  SC_END
}

sc_err sc_gaussian_blur(int mode, sc_tensor x, double sigma, int64_t radius, int padmode,
                        sc_tensor *out) {
  SC_BEGIN
  sc::Mode m(mode);
  *out = wrap(gaussian_blur(T(x), sigma, radius, padmode));
  SC_END
}

sc_err sc_set_caching_allocator(int enable) {
  SC_BEGIN
  if (enable) {
    c10::SetAllocator(c10::DeviceType::CPU, &g_caching, 100);
  } else {
    c10::SetAllocator(c10::DeviceType::CPU, c10::GetDefaultCPUAllocator(), 100);
  }
  SC_END
}

sc_err sc_cpu_allocator_trim(int64_t *released_bytes) {
  SC_BEGIN
  Cache &c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  int64_t n = 0;
  for (auto &kv : c.free) {
    c.sizes.erase(kv.second);
    std::free(kv.second);
    n += static_cast<int64_t>(kv.first);
  }
  c.free.clear();
  c.cached = 0;
#if defined(__GLIBC__)
  // blocks under glibc's mmap threshold (up to 32 MiB once larger ones were freed) went back
  // to its heap, not to the kernel: hand the heap's free pages back too
  malloc_trim(0);
#endif
  if (released_bytes != nullptr) *released_bytes = n;
  SC_END
}

sc_err sc_cpu_allocator_stats(int64_t *cached_bytes, int64_t *hits, int64_t *misses) {
  SC_BEGIN
  Cache &c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  *cached_bytes = static_cast<int64_t>(c.cached);
  *hits = c.hits.load();
  *misses = c.misses.load();
  SC_END
}

sc_err sc_conv1x1(int mode, sc_tensor x, sc_tensor w, sc_tensor b, sc_tensor *out) {
  SC_BEGIN
  sc::Mode m(mode);
  c10::optional<at::Tensor> bias;
  if (b != nullptr) bias = T(b);
  *out = wrap(conv1x1(T(x), T(w), bias));
  SC_END
}

sc_err sc_mix_chain(int mode, sc_tensor x, const sc_tensor *ws, const sc_tensor *bs, int n, double slope,
                    int act_hidden, int act_last, sc_tensor *out) {
  SC_BEGIN
  sc::Mode m(mode);
  std::vector<at::Tensor> w, b;
  for (int i = 0; i < n; i++) {
    w.push_back(T(ws[i]));
    b.push_back(bs != nullptr && bs[i] != nullptr ? T(bs[i]) : at::Tensor());
  }
  *out = wrap(mix_chain(T(x), w, b, slope, act_hidden != 0, act_last != 0));
  SC_END
}

sc_err sc_clip_preprocess(int mode, sc_tensor rgb, int64_t size, sc_tensor mean, sc_tensor std_,
                          sc_tensor *out) {
  SC_BEGIN
  sc::Mode m(mode);
  *out = wrap(clip_preprocess(T(rgb), size, T(mean), T(std_)));
  SC_END
}

}  // extern "C"
