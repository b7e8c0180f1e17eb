// sc_aoti.cpp - AOTInductor packages (.pt2) through torch::inductor::AOTIModelPackageLoader.
//
// A package is a zip holding a compiled shared library per model plus its weights; the
// loader extracts it to a temporary folder and dlopens the library. The generated code trusts
// its inputs (dtype, shape, strides and device are checked only under
// AOTI_RUNTIME_CHECK_INPUTS=1, read once per process), so a wrong input is undefined
// behaviour, not an exception: this file checks every input itself before a run, against the
// package's device and, where the exporter recorded it, the "spectraclip.inputs" spec.
#include "sc_common.h"

#include <algorithm>
#include <cstdio>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#if SC_TORCH_AT_LEAST(2, 6) && __has_include(<torch/csrc/inductor/aoti_package/model_package_loader.h>)
#define SC_WITH_AOTI 1
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#endif

#include <sys/stat.h>

#ifdef SC_WITH_AOTI

namespace {

// One input as "spectraclip.inputs" describes it: float32[1..16,3,112,112] (dims separated
// by commas, a dim either a size or an inclusive range lo..hi); inputs separated by ';'.
struct InputSpec {
  at::ScalarType dtype = at::kFloat;
  std::vector<std::pair<int64_t, int64_t>> dims;  // [lo, hi] per dimension
  std::string text;
};

at::ScalarType parse_dtype(const std::string &s) {
  static const std::pair<const char *, at::ScalarType> names[] = {
      {"float32", at::kFloat}, {"float64", at::kDouble}, {"float16", at::kHalf},
      {"bfloat16", at::kBFloat16}, {"int64", at::kLong}, {"int32", at::kInt},
      {"uint8", at::kByte}, {"bool", at::kBool}};
  for (const auto &n : names)
    if (s == n.first) return n.second;
  throw std::invalid_argument("unknown dtype " + s);
}

int64_t parse_int(const std::string &s) {
  size_t used = 0;
  long long v = std::stoll(s, &used);
  if (used != s.size() || v < 0) throw std::invalid_argument("bad size " + s);
  return static_cast<int64_t>(v);
}

std::vector<InputSpec> parse_inputs(const std::string &spec) {
  std::vector<InputSpec> out;
  size_t start = 0;
  while (start <= spec.size()) {
    size_t end = spec.find(';', start);
    if (end == std::string::npos) end = spec.size();
    std::string one = spec.substr(start, end - start);
    size_t lb = one.find('['), rb = one.rfind(']');
    if (lb == std::string::npos || rb != one.size() - 1)
      throw std::invalid_argument("input spec \"" + one + "\" is not dtype[dims]");
    InputSpec in;
    in.text = one;
    in.dtype = parse_dtype(one.substr(0, lb));
    std::string dims = one.substr(lb + 1, rb - lb - 1);
    size_t ds = 0;
    while (!dims.empty() && ds <= dims.size()) {
      size_t de = dims.find(',', ds);
      if (de == std::string::npos) de = dims.size();
      std::string d = dims.substr(ds, de - ds);
      size_t dots = d.find("..");
      if (dots == std::string::npos) {
        int64_t v = parse_int(d);
        in.dims.emplace_back(v, v);
      } else {
        in.dims.emplace_back(parse_int(d.substr(0, dots)), parse_int(d.substr(dots + 2)));
      }
      ds = de + 1;
    }
    out.push_back(std::move(in));
    start = end + 1;
  }
  return out;
}

std::string shape_of(const at::Tensor &t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); i++) s += (i ? "," : "") + std::to_string(t.size(i));
  return s + "]";
}

// not_a_package is the error for a file the loader cannot read as a package, with the first
// line of the loader's reason (the rest lists the archive's files).
std::string not_a_package(const std::string &model, const char *why) {
  std::string w(why != nullptr ? why : "unknown error");
  w = w.substr(0, w.find('\n'));
  return "not an AOTInductor package with a model \"" + model + "\" (" + w + ")";
}

// base_version is "2.11.0" of "2.11.0+cu130".
std::string base_version(const std::string &v) { return v.substr(0, v.find('+')); }

}  // namespace

struct sc_aoti_s {
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader;
  std::unordered_map<std::string, std::string> meta;
  at::Device device{at::kCPU};
  std::vector<InputSpec> inputs;  // empty: the package records none
  bool has_inputs = false;
  std::string path;
};

namespace {

void to_c_strings(const std::vector<std::string> &a, char ***out, int *n) {
  size_t k = a.size();
  auto **arr = static_cast<char **>(std::calloc(k ? k : 1, sizeof(char *)));
  if (arr == nullptr) throw std::runtime_error("out of memory");
  for (size_t i = 0; i < k; i++) {
    arr[i] = sc::dup(a[i]);
    if (arr[i] == nullptr) {
      for (size_t j = 0; j < i; j++) std::free(arr[j]);
      std::free(arr);
      throw std::runtime_error("out of memory");
    }
  }
  *out = arr;
  *n = static_cast<int>(k);
}

// map_to_c hands a metadata map to C as sorted keys and values (malloc'd arrays of strings).
void map_to_c(const std::unordered_map<std::string, std::string> &meta, char ***keys, char ***values, int *n) {
  std::vector<std::pair<std::string, std::string>> kv(meta.begin(), meta.end());
  std::sort(kv.begin(), kv.end());
  std::vector<std::string> ks, vs;
  for (auto &e : kv) {
    ks.push_back(e.first);
    vs.push_back(e.second);
  }
  char **ck = nullptr;
  int nk = 0;
  to_c_strings(ks, &ck, &nk);
  try {
    to_c_strings(vs, values, n);
  } catch (...) {
    for (int i = 0; i < nk; i++) std::free(ck[i]);
    std::free(ck);
    throw;
  }
  *keys = ck;
}

// package_metadata reads a package's metadata (the zip's directory and one small file) without
// loading its code; a file that is not a package is an error saying so.
std::unordered_map<std::string, std::string> package_metadata(const char *path, const std::string &name) {
  struct stat st;
  if (::stat(path, &st) != 0 || !S_ISREG(st.st_mode))
    throw std::runtime_error("not a readable file");
  try {
    return torch::inductor::AOTIModelPackageLoader::load_metadata_from_package(std::string(path), name);
  } catch (const c10::Error &e) {
    throw std::runtime_error(not_a_package(name, e.what_without_backtrace()));
  } catch (const std::exception &e) {
    throw std::runtime_error(not_a_package(name, e.what()));
  }
}

}  // namespace

extern "C" {

const char *sc_aoti_unavailable(void) { return nullptr; }

sc_err sc_aoti_load(const char *path, const char *model_name, int dev_type, int dev_index,
                    int num_runners, sc_aoti *out) {
  SC_BEGIN
  std::string p(path);
  std::string name = model_name != nullptr && model_name[0] != 0 ? model_name : "model";
  if (num_runners < 1) throw std::invalid_argument("num_runners must be >= 1");
  at::Device dev = sc::device(dev_type, dev_index);
  // The metadata first (it reads only the zip's directory and one small file), so that a
  // package for another LibTorch or device is refused before its library is dlopened.
  std::unordered_map<std::string, std::string> meta = package_metadata(path, name);
  auto get = [&](const char *k) {
    auto it = meta.find(k);
    return it == meta.end() ? std::string() : it->second;
  };
  std::string built = get("spectraclip.torch_version");
  std::string here = std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) +
                     "." + std::to_string(TORCH_VERSION_PATCH);
  if (!built.empty() && base_version(built) != here)
    throw std::runtime_error("package was compiled with torch " + built +
                             ", this build links LibTorch " + here +
                             "; re-export it with the same torch (a package runs only on its own version)");
  std::string kind = get("AOTI_DEVICE_KEY");
  if (kind.empty()) kind = get("spectraclip.device");
  std::string want = dev.is_cuda() ? "cuda" : "cpu";
  if (!kind.empty() && kind != want)
    throw std::runtime_error("package was compiled for " + kind + ", asked to run it on " + want +
                             "; export one for " + want);
#ifndef SC_WITH_CUDA
  if (dev.is_cuda()) throw std::runtime_error("this build of csrc has no CUDA support");
#endif
  auto h = std::make_unique<sc_aoti_s>();
  h->path = p;
  h->device = dev;
  auto spec = meta.find("spectraclip.inputs");
  if (spec != meta.end()) {
    try {
      h->inputs = parse_inputs(spec->second);
    } catch (const std::exception &e) {
      throw std::runtime_error("metadata spectraclip.inputs \"" + spec->second + "\": " + e.what());
    }
    h->has_inputs = true;
  }
  c10::DeviceIndex idx = dev.is_cuda() ? dev.index() : static_cast<c10::DeviceIndex>(-1);
  h->loader = std::make_unique<torch::inductor::AOTIModelPackageLoader>(
      p, name, /*run_single_threaded=*/false, static_cast<size_t>(num_runners), idx);
  h->meta = h->loader->get_metadata();
  *out = h.release();
  SC_END
}

void sc_aoti_free(sc_aoti m) { delete m; }

sc_err sc_aoti_run(sc_aoti m, const sc_tensor *ins, int nin, sc_tensor **outs, int *nout) {
  SC_BEGIN
  if (m == nullptr) throw std::invalid_argument("nil package handle");
  sc::Mode nograd(SC_MODE_NOGRAD);  // a package is forward-only
  if (m->has_inputs && static_cast<size_t>(nin) != m->inputs.size())
    throw std::invalid_argument("the package takes " + std::to_string(m->inputs.size()) + " inputs, got " +
                                std::to_string(nin));
  std::vector<at::Tensor> args;
  args.reserve(nin);
  for (int i = 0; i < nin; i++) {
    const at::Tensor &t = sc::T(ins[i]);
    std::string which = "input " + std::to_string(i);
    if (!t.defined()) throw std::invalid_argument(which + " is undefined");
    if (t.device() != m->device)
      throw std::invalid_argument(which + " is on " + t.device().str() + ", the package runs on " +
                                  m->device.str());
    if (m->has_inputs) {
      const InputSpec &s = m->inputs[i];
      bool ok = t.scalar_type() == s.dtype && t.dim() == static_cast<int64_t>(s.dims.size());
      for (int64_t d = 0; ok && d < t.dim(); d++)
        ok = t.size(d) >= s.dims[d].first && t.size(d) <= s.dims[d].second;
      if (!ok)
        throw std::invalid_argument(which + " is " + std::string(c10::toString(t.scalar_type())) +
                                    shape_of(t) + ", the package takes " + s.text);
    }
    args.push_back(t.contiguous());
  }
  std::vector<at::Tensor> res = m->loader->run(args);
  size_t k = res.size();
  auto *arr = static_cast<sc_tensor *>(std::calloc(k ? k : 1, sizeof(sc_tensor)));
  if (arr == nullptr) throw std::runtime_error("out of memory");
  for (size_t i = 0; i < k; i++) arr[i] = res[i].defined() ? sc::wrap(res[i]) : nullptr;
  *outs = arr;
  *nout = static_cast<int>(k);
  SC_END
}

sc_err sc_aoti_metadata(sc_aoti m, char ***keys, char ***values, int *n) {
  SC_BEGIN
  if (m == nullptr) throw std::invalid_argument("nil package handle");
  map_to_c(m->meta, keys, values, n);
  SC_END
}

sc_err sc_aoti_constant_names(sc_aoti m, char ***names, int *n) {
  SC_BEGIN
  if (m == nullptr) throw std::invalid_argument("nil package handle");
  to_c_strings(m->loader->get_constant_fqns(), names, n);
  SC_END
}

sc_err sc_aoti_package_metadata(const char *path, const char *model_name, char ***keys, char ***values, int *n) {
  SC_BEGIN
  std::string name = model_name != nullptr && model_name[0] != 0 ? model_name : "model";
  map_to_c(package_metadata(path, name), keys, values, n);
  SC_END
}

}  // extern "C"

#else  // no AOTInductor in this LibTorch

#define SC_STR2(x) #x
#define SC_STR(x) SC_STR2(x)
static const char *const kUnavailable =
    "compiled detectors (.pt2, AOTInductor) need LibTorch 2.6 or newer; this build links LibTorch " SC_STR(
        TORCH_VERSION_MAJOR) "." SC_STR(TORCH_VERSION_MINOR) ".x";

struct sc_aoti_s {};

extern "C" {

const char *sc_aoti_unavailable(void) { return kUnavailable; }

sc_err sc_aoti_load(const char *, const char *, int, int, int, sc_aoti *) {
  SC_BEGIN
  throw std::runtime_error(kUnavailable);
  SC_END
}

void sc_aoti_free(sc_aoti m) { delete m; }

sc_err sc_aoti_run(sc_aoti, const sc_tensor *, int, sc_tensor **, int *) {
  SC_BEGIN
  throw std::runtime_error(kUnavailable);
  SC_END
}

sc_err sc_aoti_metadata(sc_aoti, char ***, char ***, int *) {
  SC_BEGIN
  throw std::runtime_error(kUnavailable);
  SC_END
}

sc_err sc_aoti_constant_names(sc_aoti, char ***, int *) {
  SC_BEGIN
  throw std::runtime_error(kUnavailable);
  SC_END
}

sc_err sc_aoti_package_metadata(const char *, const char *, char ***, char ***, int *) {
  SC_BEGIN
  throw std::runtime_error(kUnavailable);
  SC_END
}

}  // extern "C"

#endif
