// sc_jit.cpp - TorchScript modules, tensor archives, optimizers and CUDA queries.
#include <torch/cuda.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>
#include <torch/script.h>
#include <torch/serialize.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/csrc/jit/serialization/pickler.h>
#include <caffe2/serialize/inline_container.h>

#include <fcntl.h>
#include <unistd.h>

#ifdef SC_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <vector>

#include "sc_common.h"

using sc::T;
using sc::wrap;

struct sc_module_s {
  torch::jit::Module m;
};
struct sc_optim_s {
  std::unique_ptr<torch::optim::Optimizer> o;
};

namespace {

void flatten(const c10::IValue &v, std::vector<at::Tensor> &out) {
  if (v.isTensor()) {
    out.push_back(v.toTensor());
  } else if (v.isTuple()) {
    for (const auto &e : v.toTupleRef().elements()) flatten(e, out);
  } else if (v.isTensorList()) {
    for (const at::Tensor &t : v.toTensorVector()) out.push_back(t);
  } else if (v.isList()) {
    for (const auto &e : v.toListRef()) flatten(e, out);
  } else if (v.isNone()) {
    out.push_back(at::Tensor());
  } else {
    throw std::invalid_argument("module returned a " + v.tagKind() +
                                ", expected tensors or tuples/lists of tensors");
  }
}

// to_c_arrays hands tensors (and names) to the caller as malloc'd arrays. On any failure
// it frees what it made and throws, leaving the out-parameters untouched.
void to_c_arrays(const std::vector<std::string> &names, const std::vector<at::Tensor> &ts,
                 char ***cnames, sc_tensor **cts, int *n) {
  size_t k = ts.size();
  auto *arr = static_cast<sc_tensor *>(std::calloc(k ? k : 1, sizeof(sc_tensor)));
  if (arr == nullptr) throw std::runtime_error("out of memory for a result array of " + std::to_string(k));
  char **nm = nullptr;
  if (cnames != nullptr) {
    nm = static_cast<char **>(std::calloc(k ? k : 1, sizeof(char *)));
    if (nm == nullptr) {
      std::free(arr);
      throw std::runtime_error("out of memory for a name array of " + std::to_string(k));
    }
  }
  try {
    for (size_t i = 0; i < k; i++) {
      arr[i] = ts[i].defined() ? wrap(ts[i]) : nullptr;
      if (nm != nullptr) {
        nm[i] = sc::dup(names[i]);
        if (nm[i] == nullptr) throw std::runtime_error("out of memory for name " + names[i]);
      }
    }
  } catch (...) {
    for (size_t i = 0; i < k; i++) {
      delete reinterpret_cast<at::Tensor *>(arr[i]);
      if (nm != nullptr) std::free(nm[i]);
    }
    std::free(arr);
    std::free(nm);
    throw;
  }
  *cts = arr;
  if (cnames != nullptr) *cnames = nm;
  *n = static_cast<int>(k);
}

// restore_options sets every parameter group's options from an archive written by
// sc_optim_save: LibTorch 1.13's Optimizer::load restores the per-parameter state but
// keeps the options (learning rate, betas, weight decay, ...) the optimizer was built with.
template <typename Opts>
void restore_options(torch::optim::Optimizer &o, torch::serialize::InputArchive &a) {
  torch::serialize::InputArchive groups;
  a.read("param_groups", groups);
  torch::Tensor n;
  groups.read("param_groups/size", n);
  auto &pg = o.param_groups();
  int64_t k = n.item<int64_t>();
  if (k != static_cast<int64_t>(pg.size()))
    throw std::runtime_error("optimizer state has " + std::to_string(k) +
                             " parameter groups, the optimizer " + std::to_string(pg.size()));
  for (int64_t i = 0; i < k; i++) {
    torch::serialize::InputArchive g, oa;
    groups.read("param_groups/" + std::to_string(i), g);
    g.read("options", oa);
    Opts opts(0);
    opts.serialize(oa);
    static_cast<Opts &>(pg[i].options()) = opts;
  }
}

// load_hex_keyed_state restores the per-parameter state of an optimizer archive whose
// parameter keys are hexadecimal TensorImpl addresses ("0x7f37..."), as LibTorch 1.x wrote
// them, into a LibTorch whose own load reads the keys as decimal numbers (2.x: std::stoull
// stops at the 'x', every state lands on key 0 and the first step fails with a shape
// mismatch). States are matched to the optimizer's parameters by position, group by group,
// as Optimizer::load does; a state whose tensors do not have its parameter's shape is an
// error. It returns false (and does nothing) for an archive the LibTorch loads itself.
template <typename State, typename Opt = torch::optim::Optimizer>
bool load_hex_keyed_state(Opt &o, torch::serialize::InputArchive &a) {
  using Key = typename std::remove_reference_t<decltype(o.state())>::key_type;
  if constexpr (!std::is_same_v<Key, void *>) {
    return false;  // string keys (LibTorch 1.x): its own load matches them as strings
  } else {
    torch::serialize::InputArchive groups, states;
    a.read("param_groups", groups);
    torch::Tensor n;
    groups.read("param_groups/size", n);
    auto &pg = o.param_groups();
    const int64_t k = n.item<int64_t>();
    if (k != static_cast<int64_t>(pg.size())) return false;  // restore_options reports it
    std::vector<std::vector<std::string>> keys(k);
    bool hex = false;
    for (int64_t i = 0; i < k; i++) {
      torch::serialize::InputArchive g;
      groups.read("param_groups/" + std::to_string(i), g);
      torch::Tensor sz;
      g.read("params/size", sz);
      const int64_t m = sz.item<int64_t>();
      if (m != static_cast<int64_t>(pg[i].params().size()))
        throw std::runtime_error("optimizer state has " + std::to_string(m) + " parameters in group " +
                                 std::to_string(i) + ", the optimizer " + std::to_string(pg[i].params().size()));
      for (int64_t j = 0; j < m; j++) {
        c10::IValue v;
        g.read("params/" + std::to_string(j), v);
        keys[i].push_back(v.toStringRef());
        if (keys[i].back().rfind("0x", 0) == 0) hex = true;
      }
    }
    if (!hex) return false;
    if (!a.try_read("state", states)) return false;
    o.state().clear();
    for (int64_t i = 0; i < k; i++) {
      for (size_t j = 0; j < keys[i].size(); j++) {
        torch::serialize::InputArchive ps;
        if (!states.try_read(keys[i][j], ps)) continue;  // a parameter without state yet
        auto st = std::make_unique<State>();
        st->serialize(ps);
        const torch::Tensor &p = pg[i].params()[j];
        if constexpr (std::is_same_v<State, torch::optim::SGDParamState>) {
          if (st->momentum_buffer().defined() && st->momentum_buffer().sizes() != p.sizes())
            throw std::runtime_error("optimizer state of parameter " + std::to_string(j) + " does not match its shape");
        } else {
          if (st->exp_avg().defined() && st->exp_avg().sizes() != p.sizes())
            throw std::runtime_error("optimizer state of parameter " + std::to_string(j) + " has shape " +
                                     c10::str(st->exp_avg().sizes()) + ", the parameter " + c10::str(p.sizes()));
        }
        o.state()[p.unsafeGetTensorImpl()] = std::move(st);
      }
    }
    return true;
  }
}

// FileSink is the writer function every LibTorch archive writer here gets (through
// PyTorchStreamWriter's writer-function constructor, ExportModule and OutputArchive::save_to).
// It never reports a short write: after the first failed write(2) it keeps the errno, drops
// the rest of the archive and still answers "all written". A PyTorchStreamWriter that sees a
// short write marks itself failed, throws from writeRecord, and then its destructor calls
// writeEndOfFile, which writes again, fails its position check ("unexpected pos") and throws
// out of the destructor: std::terminate, the process aborts (#25 item 1). Fed by a FileSink the
// writer always finishes normally; finish() then reports the first error, naming the file
// and, for ENOSPC, saying the disk is full.
class FileSink {
 public:
  explicit FileSink(const char *path) : path_(path) {
    fd_ = ::open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) throw std::runtime_error(std::string("cannot create ") + path + ": " + std::strerror(errno));
  }
  FileSink(const FileSink &) = delete;
  FileSink &operator=(const FileSink &) = delete;
  ~FileSink() {
    if (fd_ >= 0) ::close(fd_);
  }

  size_t operator()(const void *buf, size_t n) {
    const char *p = static_cast<const char *>(buf);
    size_t left = n;
    while (err_ == 0 && left > 0) {
      ssize_t w = ::write(fd_, p, left);
      if (w < 0) {
        if (errno == EINTR) continue;
        err_ = errno;
      } else if (w == 0) {
        err_ = EIO;
      } else {
        p += w;
        left -= static_cast<size_t>(w);
        written_ += static_cast<uint64_t>(w);
      }
    }
    return n;  // never short: see the type's comment
  }

  std::function<size_t(const void *, size_t)> func() {
    return [this](const void *buf, size_t n) -> size_t { return (*this)(buf, n); };
  }

  // finish closes the file and throws the first error of the writes or the close.
  void finish() {
    if (fd_ >= 0) {
      int rc = ::close(fd_);
      fd_ = -1;
      if (rc != 0 && err_ == 0) err_ = errno;
    }
    if (err_ == 0) return;
    std::string cause = std::strerror(err_);
    if (err_ == ENOSPC || err_ == EDQUOT)
      cause = "the disk is full (" + cause + ")";
    throw std::runtime_error(cause + " writing " + path_ + " after " + std::to_string(written_) +
                             " bytes");
  }

 private:
  std::string path_;
  int fd_ = -1;
  int err_ = 0;
  uint64_t written_ = 0;
};

}  // namespace

extern "C" {

// ---- CUDA (through torch/cuda.h, which every LibTorch build has) ----

int sc_cuda_device_count(void) {
  try {
    return static_cast<int>(torch::cuda::device_count());
  } catch (...) {
    return 0;
  }
}

int sc_cuda_is_available(void) { return sc_cuda_device_count() > 0 ? 1 : 0; }

sc_err sc_manual_seed_cuda(uint64_t seed) {
  SC_BEGIN
  if (torch::cuda::is_available()) torch::cuda::manual_seed_all(seed);
  SC_END
}

sc_err sc_cuda_synchronize(int device) {
  SC_BEGIN
  torch::cuda::synchronize(device);
  SC_END
}

sc_err sc_cuda_memory(int device, int64_t *allocated, int64_t *reserved, int64_t *peak) {
  SC_BEGIN
#ifdef SC_WITH_CUDA
  // StatType moved from c10::cuda::CUDACachingAllocator (1.13 .. 2.3) to
  // c10::CachingDeviceAllocator (2.4+); AGGREGATE is index 0 of every StatArray in all of
  // them, so the index is spelled out instead of the enum.
  auto st = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(device));
  constexpr size_t agg = 0;  // StatType::AGGREGATE
  *allocated = st.allocated_bytes[agg].current;
  *reserved = st.reserved_bytes[agg].current;
  *peak = st.allocated_bytes[agg].peak;
#else
  (void)device;
  *allocated = *reserved = *peak = 0;
  throw std::runtime_error("this build of csrc has no CUDA support");
#endif
  SC_END
}

// ---- tensor archives (PyTorch's zip pickle format: torch.load reads them) ----

sc_err sc_save_tensors(const char *path, const char **names, const sc_tensor *ts, int n) {
  SC_BEGIN
  // What torch::jit::pickle_save does, but with a Pickler that does not tag aggregates:
  // pickle_save wraps every dict in torch.jit._pickle.restore_type_tag, which
  // torch.load(weights_only=True) (the default since PyTorch 2.6) refuses. Untagged, the
  // archive holds a plain dict of tensors rebuilt by torch._utils._rebuild_tensor_v2, which
  // every torch.load and torch::jit::pickle_load read.
  c10::Dict<std::string, at::Tensor> d;
  for (int i = 0; i < n; i++) {
    at::Tensor t = T(ts[i]).detach();
    if (!t.is_cpu()) t = t.cpu();
    d.insert(names[i], t);
  }
  std::vector<char> pkl;
  torch::jit::Pickler pickler(
      [&](const char *buf, size_t size) { pkl.insert(pkl.end(), buf, buf + size); },
      /*tensor_table=*/nullptr, /*type_renamer=*/nullptr, /*memoized_class_types=*/nullptr,
      /*get_tensor_id=*/nullptr, /*tag_aggregates=*/false);
  pickler.protocol();
  pickler.pushIValue(c10::IValue(d));
  pickler.stop();
  FileSink sink(path);
  // On the heap so that a failure part-way can abandon it: its destructor would call
  // writeEndOfFile on a half-written archive, and a throw from there ends the process.
  auto writer = std::make_unique<caffe2::serialize::PyTorchStreamWriter>(sink.func());
  try {
    // records as torch::jit::writeArchiveAndTensors names them: data/<key>, then data.pkl
    // (each record is the tensor's whole CPU storage, as getWriteableTensorData gives it)
    const std::vector<at::Tensor> &tensors = pickler.tensorData();
    for (size_t i = 0; i < tensors.size(); i++) {
      const at::Storage &st = tensors[i].storage();
      writer->writeRecord("data/" + std::to_string(i), st.data_ptr().get(), st.nbytes());
    }
    writer->writeRecord("data.pkl", pkl.data(), pkl.size());
    writer->writeEndOfFile();
  } catch (...) {
    if (!writer->finalized()) (void)writer.release();  // abandoned: a few KB of zip state leak
    throw;
  }
  writer.reset();
  sink.finish();
  SC_END
}

sc_err sc_load_tensors(const char *path, int dev_type, int dev_index, char ***names,
                       sc_tensor **ts, int *n) {
  SC_BEGIN
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(std::string("cannot open ") + path);
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  c10::IValue v = torch::jit::pickle_load(bytes);
  if (!v.isGenericDict()) throw std::runtime_error(std::string(path) + ": not a tensor dictionary");
  std::vector<std::string> ks;
  std::vector<at::Tensor> vs;
  at::Device dev = sc::device(dev_type, dev_index);
  for (const auto &kv : v.toGenericDict()) {
    if (!kv.key().isString() || !kv.value().isTensor())
      throw std::runtime_error(std::string(path) + ": entries must be string -> tensor");
    ks.push_back(kv.key().toStringRef());
    vs.push_back(kv.value().toTensor().to(dev));
  }
  to_c_arrays(ks, vs, names, ts, n);
  SC_END
}

// ---- TorchScript ----

sc_err sc_jit_load(const char *path, int dev_type, int dev_index, sc_module *out) {
  SC_BEGIN
  auto m = torch::jit::load(path, sc::device(dev_type, dev_index));
  m.eval();
  *out = new sc_module_s{m};
  SC_END
}

sc_err sc_jit_new(const char *name, sc_module *out) {
  SC_BEGIN
  torch::jit::Module mod(name);
  // nn.Module's flag, so that TorchScript source can read self.training and Train works
  // on modules built from Go.
  mod.register_attribute("training", c10::BoolType::get(), true);
  *out = new sc_module_s{mod};
  SC_END
}

sc_err sc_jit_define(sc_module m, const char *src) {
  SC_BEGIN
  m->m.define(src);
  SC_END
}

sc_err sc_jit_register_buffer(sc_module m, const char *name, sc_tensor t) {
  SC_BEGIN
  m->m.register_buffer(name, T(t).detach());
  SC_END
}

sc_err sc_jit_register_parameter(sc_module m, const char *name, sc_tensor t) {
  SC_BEGIN
  m->m.register_parameter(name, T(t).detach(), false);
  SC_END
}

sc_err sc_jit_register_attr(sc_module m, const char *name, int kind, int64_t i, double d,
                            const char *s) {
  SC_BEGIN
  switch (kind) {
    case 0: m->m.register_attribute(name, c10::IntType::get(), i); break;
    case 1: m->m.register_attribute(name, c10::FloatType::get(), d); break;
    case 2: m->m.register_attribute(name, c10::StringType::get(), std::string(s)); break;
    case 3: m->m.register_attribute(name, c10::BoolType::get(), i != 0); break;
    default: throw std::invalid_argument("unknown attribute kind");
  }
  SC_END
}

void sc_jit_free(sc_module m) { delete m; }

sc_err sc_jit_save(sc_module m, const char *path) {
  SC_BEGIN
  FileSink sink(path);
  torch::jit::ExportModule(m->m, sink.func());
  sink.finish();
  SC_END
}

sc_err sc_jit_run(int mode, sc_module m, const char *method, const sc_tensor *ins, int nin,
                  sc_tensor **outs, int *nout) {
  SC_BEGIN
  sc::Mode g(mode);
  std::vector<c10::IValue> args;
  args.reserve(nin);
  for (int i = 0; i < nin; i++) args.emplace_back(T(ins[i]));
  c10::IValue r;
  if (method == nullptr || std::string(method) == "forward") {
    r = m->m.forward(args);
  } else {
    r = m->m.get_method(method)(args);
  }
  std::vector<at::Tensor> flat;
  flatten(r, flat);
  to_c_arrays({}, flat, nullptr, outs, nout);
  SC_END
}

sc_err sc_jit_attr(sc_module m, const char *name, int *kind, int64_t *i, double *d, char **s,
                   sc_tensor *t) {
  SC_BEGIN
  *kind = -1;
  if (!m->m.hasattr(name)) return nullptr;
  c10::IValue v = m->m.attr(name);
  if (v.isInt()) {
    *kind = 0;
    *i = v.toInt();
  } else if (v.isDouble()) {
    *kind = 1;
    *d = v.toDouble();
  } else if (v.isString()) {
    *kind = 2;
    *s = sc::dup(v.toStringRef());
  } else if (v.isBool()) {
    *kind = 3;
    *i = v.toBool() ? 1 : 0;
  } else if (v.isTensor()) {
    *kind = 4;
    *t = wrap(v.toTensor());
  } else {
    throw std::invalid_argument(std::string("attribute ") + name + " has unsupported type " +
                                v.tagKind());
  }
  SC_END
}

sc_err sc_jit_to(sc_module m, int dtype, int dev_type, int dev_index) {
  SC_BEGIN
  at::Device dev = sc::device(dev_type, dev_index);
  if (dtype < 0) {
    m->m.to(dev);
  } else {
    m->m.to(dev, sc::dtype(dtype));
  }
  SC_END
}

sc_err sc_jit_train(sc_module m, int on) {
  SC_BEGIN
  m->m.train(on != 0);
  SC_END
}

sc_err sc_jit_requires_grad(sc_module m, int on) {
  SC_BEGIN
  for (at::Tensor p : m->m.parameters()) p.requires_grad_(on != 0);
  SC_END
}

sc_err sc_jit_has_method(sc_module m, const char *name, int *has) {
  SC_BEGIN
  *has = m->m.find_method(name).has_value() ? 1 : 0;
  SC_END
}

sc_err sc_jit_parameters(sc_module m, char ***names, sc_tensor **ts, int *n) {
  SC_BEGIN
  std::vector<std::string> ks;
  std::vector<at::Tensor> vs;
  for (const auto &p : m->m.named_parameters(true)) {
    ks.push_back(p.name);
    vs.push_back(p.value);
  }
  to_c_arrays(ks, vs, names, ts, n);
  SC_END
}

// ---- optimizers ----

sc_err sc_optim_new(int kind, const sc_tensor *params, int n, double lr, double beta1,
                    double beta2, double eps, double weight_decay, double momentum,
                    int nesterov, sc_optim *out) {
  SC_BEGIN
  if (!(lr > 0)) throw std::invalid_argument("learning rate must be > 0");
  std::vector<at::Tensor> ps;
  for (int i = 0; i < n; i++) ps.push_back(T(params[i]));
  std::unique_ptr<torch::optim::Optimizer> o;
  switch (kind) {
    case 0:
      o.reset(new torch::optim::SGD(ps, torch::optim::SGDOptions(lr)
                                            .momentum(momentum)
                                            .nesterov(nesterov != 0)
                                            .weight_decay(weight_decay)));
      break;
    case 1:
      o.reset(new torch::optim::Adam(ps, torch::optim::AdamOptions(lr)
                                             .betas(std::make_tuple(beta1, beta2))
                                             .eps(eps)
                                             .weight_decay(weight_decay)));
      break;
    case 2:
      o.reset(new torch::optim::AdamW(ps, torch::optim::AdamWOptions(lr)
                                              .betas(std::make_tuple(beta1, beta2))
                                              .eps(eps)
                                              .weight_decay(weight_decay)));
      break;
    default: throw std::invalid_argument("unknown optimizer kind");
  }
  *out = new sc_optim_s{std::move(o)};
  SC_END
}

void sc_optim_free(sc_optim o) { delete o; }

sc_err sc_optim_step(sc_optim o) {
  SC_BEGIN
  c10::AutoGradMode g(true);
  o->o->step();
  SC_END
}

sc_err sc_optim_zero_grad(sc_optim o) {
  SC_BEGIN
  // set_to_none on every LibTorch: 1.13's zero_grad() zero-fills, 2.x's defaults to
  // set_to_none=true. With gradients dropped, a parameter that gets no gradient in a step
  // is skipped by step() (no weight decay, no momentum), and Grad() returns nil.
  for (auto &group : o->o->param_groups()) {
    for (auto &p : group.params()) {
      at::Tensor &g = p.mutable_grad();
      if (g.defined()) g.reset();
    }
  }
  SC_END
}

sc_err sc_optim_get_lr(sc_optim o, double *lr) {
  SC_BEGIN
  auto &groups = o->o->param_groups();
  if (groups.empty()) throw std::runtime_error("optimizer has no parameter groups");
  *lr = groups[0].options().get_lr();
  SC_END
}

sc_err sc_optim_set_lr(sc_optim o, double lr) {
  SC_BEGIN
  if (!(lr >= 0)) throw std::invalid_argument("learning rate must be >= 0");
  for (auto &g : o->o->param_groups()) g.options().set_lr(lr);
  SC_END
}

sc_err sc_optim_save(sc_optim o, const char *path) {
  SC_BEGIN
  torch::serialize::OutputArchive a;
  o->o->save(a);
  FileSink sink(path);
  a.save_to(sink.func());
  sink.finish();
  SC_END
}

sc_err sc_optim_load(sc_optim o, const char *path) {
  SC_BEGIN
  torch::serialize::InputArchive a;
  a.load_from(path);
  torch::optim::Optimizer *opt = o->o.get();
  bool loaded = false;
  if (dynamic_cast<torch::optim::SGD *>(opt) != nullptr) {
    restore_options<torch::optim::SGDOptions>(*opt, a);
    loaded = load_hex_keyed_state<torch::optim::SGDParamState>(*opt, a);
  } else if (dynamic_cast<torch::optim::AdamW *>(opt) != nullptr) {
    restore_options<torch::optim::AdamWOptions>(*opt, a);
    loaded = load_hex_keyed_state<torch::optim::AdamWParamState>(*opt, a);
  } else if (dynamic_cast<torch::optim::Adam *>(opt) != nullptr) {
    restore_options<torch::optim::AdamOptions>(*opt, a);
    loaded = load_hex_keyed_state<torch::optim::AdamParamState>(*opt, a);
  }
  if (!loaded) opt->load(a);
  SC_END
}

}  // extern "C"
