// sc_dist.cpp - data-parallel collectives over LibTorch's c10d: a TCPStore for the
// rendezvous (served by rank 0, or by torchrun's agent), ProcessGroupGloo on CPUs and
// ProcessGroupNCCL on CUDA builds that have NCCL (SC_WITH_NCCL). Every collective waits
// with a timeout, so a rank that died makes the others fail instead of hanging; a heartbeat
// thread (its own store client) lets the survivors name the rank that stopped.
//
// The ProcessGroup API moved between LibTorch 1.13 and 2.x (ProcessGroupGloo became a
// c10d::Backend, Work moved out of ProcessGroup); the calls used here have the same spelling
// in both, and `auto` takes the work handle's type.
#include "sc_common.h"

#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>
#ifdef SC_WITH_GLOO  // gloo's headers were found (Debian: libgloo-dev)
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#include <torch/version.h>

#if defined(SC_WITH_CUDA) && defined(SC_WITH_NCCL)
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL
#endif
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#include <nccl.h>
#endif

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace {

using ms = std::chrono::milliseconds;

std::string hb_key(int r) { return "sc_hb/" + std::to_string(r); }

// LibTorch 1.13's TCPStore runs a callback daemon thread per client that throws
// std::system_error out of the thread (so std::terminate, SIGABRT) when the store's server
// resets the connection: rank 0 (or torchrun's agent) died. While a process group lives,
// such a terminate becomes the program's usual one-line error and exit status 1 instead of
// a C++ abort; anything else goes to the previous handler.
std::atomic<int> live_groups{0};
std::terminate_handler prev_terminate = nullptr;
std::once_flag terminate_once;

[[noreturn]] void on_terminate() {
  if (live_groups.load() > 0) {
    if (auto e = std::current_exception()) {
      try {
        std::rethrow_exception(e);
      } catch (const std::system_error &se) {
        int c = se.code().value();
        if (c == ECONNRESET || c == ECONNABORTED || c == EPIPE || c == ENOTCONN || c == ETIMEDOUT) {
          std::fprintf(stderr,
                       "error: data-parallel: the connection to the rendezvous store was lost "
                       "(rank 0, which serves it, or torchrun's agent is gone): %s\n",
                       se.what());
          std::fflush(stderr);
          std::_Exit(1);
        }
      } catch (...) {
      }
    }
  }
  if (prev_terminate != nullptr) prev_terminate();
  std::abort();
}

}  // namespace

struct sc_pg_s {
  int rank = 0;
  int world = 1;
  int backend = SC_DIST_GLOO;
  at::Device dev = at::Device(at::kCPU);
  ms timeout{60000};
  std::string host;
  int port = 0;
  c10::intrusive_ptr<c10d::Store> store;
#if defined(SC_WITH_CUDA) && defined(SC_WITH_NCCL)
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;
#endif
#ifdef SC_WITH_GLOO
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
#endif

  // heartbeat: its own store client, so it never shares a socket with the main thread
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  std::thread hb;
  c10::intrusive_ptr<c10d::TCPStore> hb_store;

  template <typename F>
  void with_pg(F f) {
#if defined(SC_WITH_CUDA) && defined(SC_WITH_NCCL)
    if (nccl) {
      f(*nccl);
      return;
    }
#endif
#ifdef SC_WITH_GLOO
    if (gloo) {
      f(*gloo);
      return;
    }
#endif
    throw std::runtime_error("the process group is not initialised");
  }

  // wait bounds a collective by the group's timeout. LibTorch 1.13 returns false from
  // Work::wait(timeout) when it runs out; 2.x throws instead (c10::DistBackendError, with a
  // many-line message from the backend's watchdog). Both become one line naming the rank.
  template <typename W>
  void wait(W &work, const char *what) {
    bool done = false;
    try {
      done = work->wait(timeout);
    } catch (const std::exception &e) {
      std::string m = e.what();
      auto nl = m.find('\n');
      if (nl != std::string::npos) m.resize(nl);
      throw std::runtime_error(std::string(what) + " on rank " + std::to_string(rank) + " of " +
                               std::to_string(world) + " failed or timed out after " +
                               std::to_string(timeout.count()) + " ms: " + m);
    }
    if (!done)
      throw std::runtime_error(std::string(what) + " on rank " + std::to_string(rank) + " of " +
                               std::to_string(world) + " timed out after " +
                               std::to_string(timeout.count()) + " ms");
  }
};

namespace {

void check_tensor(const sc_pg_s *pg, const at::Tensor &t, const char *what) {
  if (!t.defined()) throw std::invalid_argument(std::string(what) + ": undefined tensor");
  if (t.device() != pg->dev)
    throw std::invalid_argument(std::string(what) + ": tensor on " + t.device().str() +
                                ", the process group runs on " + pg->dev.str());
}

// allreduce_bucket sums a list of same-dtype tensors across ranks through one flat buffer
// and writes the results back (scaled by scale) into the tensors, in place.
void allreduce_bucket(sc_pg_s *pg, std::vector<at::Tensor> &ts, double scale) {
  if (ts.empty()) return;
  at::NoGradGuard ng;
  std::vector<at::Tensor> flat;
  flat.reserve(ts.size());
  for (auto &t : ts) flat.push_back(t.detach().reshape({-1}));
  at::Tensor bucket = at::cat(flat, 0);
  std::vector<at::Tensor> v{bucket};
  pg->with_pg([&](auto &p) {
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    o.timeout = pg->timeout;
    auto w = p.allreduce(v, o);
    pg->wait(w, "allreduce");
    return 0;
  });
  if (scale != 1.0) bucket.mul_(scale);
  int64_t off = 0;
  for (auto &t : ts) {
    int64_t n = t.numel();
    t.detach().copy_(bucket.narrow(0, off, n).view(t.sizes()));
    off += n;
  }
}

std::vector<at::Tensor> allgather_one(sc_pg_s *pg, const at::Tensor &t) {
  std::vector<at::Tensor> in{t.contiguous()};
  std::vector<std::vector<at::Tensor>> out(1);
  for (int r = 0; r < pg->world; r++) out[0].push_back(at::empty_like(in[0]));
  pg->with_pg([&](auto &p) {
    c10d::AllgatherOptions o;
    o.timeout = pg->timeout;
    auto w = p.allgather(out, in, o);
    pg->wait(w, "allgather");
    return 0;
  });
  return out[0];
}

void heartbeat(sc_pg_s *pg) {
  std::unique_lock<std::mutex> lk(pg->mu);
  while (!pg->stop) {
    lk.unlock();
    try {
      pg->hb_store->add(hb_key(pg->rank), 1);
    } catch (...) {
      // the store (rank 0) is gone: nothing to report to any more
      lk.lock();
      return;
    }
    lk.lock();
    pg->cv.wait_for(lk, ms(200), [&] { return pg->stop; });
  }
}

}  // namespace

extern "C" {

sc_err sc_dist_init(const char *master_addr, int port, int rank, int world, int backend,
                    int device_index, int64_t timeout_ms, const char *gloo_ifname,
                    const char *gloo_hostname, sc_pg *out) {
  SC_BEGIN
  *out = nullptr;
  if (world < 1) throw std::invalid_argument("world size " + std::to_string(world) + " < 1");
  if (rank < 0 || rank >= world)
    throw std::invalid_argument("rank " + std::to_string(rank) + " outside [0, " +
                                std::to_string(world) + ")");
  if (port <= 0 || port > 65535) throw std::invalid_argument("port " + std::to_string(port));
  if (timeout_ms <= 0) throw std::invalid_argument("timeout must be positive");
  std::call_once(terminate_once, [] { prev_terminate = std::set_terminate(on_terminate); });
  auto pg = std::make_unique<sc_pg_s>();
  pg->rank = rank;
  pg->world = world;
  pg->backend = backend;
  pg->timeout = ms(timeout_ms);
  pg->host = master_addr ? master_addr : "127.0.0.1";
  pg->port = port;

  // torchrun's agent already serves a store at MASTER_ADDR:MASTER_PORT when it sets
  // TORCHELASTIC_USE_AGENT_STORE=True: every rank is then a client of it (as PyTorch does)
  const char *agent = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
  bool agent_store = agent != nullptr && std::string(agent) == "True";
  c10d::TCPStoreOptions so;
  so.port = static_cast<std::uint16_t>(port);
  so.isServer = rank == 0 && !agent_store;
  so.numWorkers = static_cast<std::size_t>(world);
  so.waitWorkers = true;
  so.timeout = pg->timeout;
  auto store = c10::make_intrusive<c10d::TCPStore>(pg->host, so);
  pg->store = store;

  if (backend == SC_DIST_GLOO) {
#ifdef SC_WITH_GLOO
    auto opts = c10d::ProcessGroupGloo::Options::create(pg->timeout);
    std::string ifn = gloo_ifname ? gloo_ifname : "";
    std::string hn = gloo_hostname ? gloo_hostname : "";
    if (!ifn.empty())
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifn));
    else if (!hn.empty())
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(hn));
    else
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    opts->threads = 1;
    pg->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(pg->store, rank, world, opts);
    pg->dev = at::Device(at::kCPU);
#else
    throw std::runtime_error(std::string("the Gloo backend is not built into this csrc library: ") +
                             sc_dist_gloo_unavailable());
#endif
  } else if (backend == SC_DIST_NCCL) {
#if defined(SC_WITH_CUDA) && defined(SC_WITH_NCCL)
    // the per-op timeout only holds with blocking wait; 2.x reads TORCH_NCCL_BLOCKING_WAIT
    // and warns that NCCL_BLOCKING_WAIT is deprecated, 1.13 reads only the old name
    setenv(sc_nccl_blocking_wait_env(), "1", 0);
    pg->dev = at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device_index));
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(device_index));
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = pg->timeout;
    pg->nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(pg->store, rank, world, opts);
#else
    throw std::runtime_error(
        "the NCCL backend is not built into this csrc library (a CUDA LibTorch with NCCL "
        "headers is needed; rebuild csrc/ there)");
#endif
  } else {
    throw std::invalid_argument("unknown backend code " + std::to_string(backend));
  }

  // the heartbeat's own client of the store
  c10d::TCPStoreOptions ho;
  ho.port = static_cast<std::uint16_t>(port);
  ho.isServer = false;
  ho.waitWorkers = false;
  ho.timeout = pg->timeout;
  pg->hb_store = c10::make_intrusive<c10d::TCPStore>(pg->host, ho);
  pg->hb_store->add(hb_key(rank), 1);
  sc_pg_s *raw = pg.get();
  pg->hb = std::thread([raw] { heartbeat(raw); });
  *out = pg.release();
  live_groups.fetch_add(1);
  SC_END
}

void sc_dist_free(sc_pg pg) {
  if (pg == nullptr) return;
  {
    std::lock_guard<std::mutex> lk(pg->mu);
    pg->stop = true;
  }
  pg->cv.notify_all();
  if (pg->hb.joinable()) pg->hb.join();
#if defined(SC_WITH_CUDA) && defined(SC_WITH_NCCL) && SC_TORCH_AT_LEAST(2, 4)
  // since 2.4 a ProcessGroupNCCL freed without shutdown() warns and aborts its communicators
  if (pg->nccl) {
    try {
      pg->nccl->shutdown();
    } catch (...) {
    }
  }
#endif
  try {
    delete pg;
  } catch (...) {
  }
  live_groups.fetch_sub(1);
}

sc_err sc_build_info(char **out) {
  SC_BEGIN
  std::string v;
#ifdef SC_WITH_CUDA
  v = "cuda compiled";
#if defined(CUDART_VERSION)
  v += " (CUDA runtime " + std::to_string(CUDART_VERSION / 1000) + "." +
       std::to_string(CUDART_VERSION % 1000 / 10) + ")";
#endif
#else
  v = "cuda not compiled";
#endif
  v += "; c10d backends:";
#ifdef SC_WITH_GLOO
  v += " gloo";
#endif
#if defined(SC_WITH_CUDA) && defined(SC_WITH_NCCL)
  v += " nccl " + std::to_string(NCCL_MAJOR) + "." + std::to_string(NCCL_MINOR) + "." +
       std::to_string(NCCL_PATCH);
#endif
  *out = sc::dup(v);
  SC_END
}

sc_err sc_dist_wait_unfinished(int rank, int world, int64_t timeout_ms) {
  SC_BEGIN
  sc_pg_s pg;
  pg.rank = rank;
  pg.world = world;
  pg.timeout = ms(timeout_ms);
  auto work = c10::make_intrusive<c10d::Work>();  // never completed: wait runs out
  pg.wait(work, "allreduce");
  SC_END
}

const char *sc_nccl_blocking_wait_env(void) {
  return SC_TORCH_AT_LEAST(2, 0) ? "TORCH_NCCL_BLOCKING_WAIT" : "NCCL_BLOCKING_WAIT";
}

const char *sc_dist_gloo_unavailable(void) {
#ifdef SC_WITH_GLOO
  return nullptr;
#elif defined(SC_GLOO_MISSING)
  return SC_GLOO_MISSING;
#else
  return "gloo's headers were not found when csrc/ was built (Debian: apt-get install "
         "libgloo-dev, then make csrc)";
#endif
}

int sc_dist_nccl_available(void) {
#if defined(SC_WITH_CUDA) && defined(SC_WITH_NCCL)
  return 1;
#else
  return 0;
#endif
}

sc_err sc_dist_allreduce(sc_pg pg, const sc_tensor *ts, int n, double scale) {
  SC_BEGIN
  if (pg == nullptr) throw std::invalid_argument("nil process group");
  // one bucket per dtype, in first-seen order
  std::vector<std::vector<at::Tensor>> buckets;
  std::vector<at::ScalarType> kinds;
  for (int i = 0; i < n; i++) {
    at::Tensor &t = sc::T(ts[i]);
    check_tensor(pg, t, "allreduce");
    size_t k = 0;
    while (k < kinds.size() && kinds[k] != t.scalar_type()) k++;
    if (k == kinds.size()) {
      kinds.push_back(t.scalar_type());
      buckets.emplace_back();
    }
    buckets[k].push_back(t);
  }
  for (auto &b : buckets) allreduce_bucket(pg, b, scale);
  SC_END
}

sc_err sc_dist_broadcast(sc_pg pg, const sc_tensor *ts, int n, int root) {
  SC_BEGIN
  if (pg == nullptr) throw std::invalid_argument("nil process group");
  if (root < 0 || root >= pg->world) throw std::invalid_argument("root rank out of range");
  at::NoGradGuard ng;
  for (int i = 0; i < n; i++) {
    at::Tensor &t = sc::T(ts[i]);
    check_tensor(pg, t, "broadcast");
    at::Tensor c = t.detach().contiguous();
    std::vector<at::Tensor> v{c};
    pg->with_pg([&](auto &p) {
      c10d::BroadcastOptions o;
      o.rootRank = root;
      o.timeout = pg->timeout;
      auto w = p.broadcast(v, o);
      pg->wait(w, "broadcast");
    });
    if (!c.is_same(t)) t.detach().copy_(c);
  }
  SC_END
}

// sc_dist_allgather concatenates every rank's tensor along dim 0 in rank order; the ranks'
// dim-0 sizes may differ (the rest of the shape and the dtype must agree).
sc_err sc_dist_allgather(sc_pg pg, sc_tensor t, sc_tensor *out) {
  SC_BEGIN
  *out = nullptr;
  if (pg == nullptr) throw std::invalid_argument("nil process group");
  at::NoGradGuard ng;
  at::Tensor x = sc::T(t).detach();
  check_tensor(pg, x, "allgather");
  if (x.dim() == 0) x = x.reshape({1});
  at::Tensor n = at::full({1}, x.size(0), at::TensorOptions().dtype(at::kLong).device(pg->dev));
  auto sizes = allgather_one(pg, n);
  int64_t mx = 0;
  std::vector<int64_t> ns;
  for (auto &s : sizes) {
    ns.push_back(s.to(at::kCPU).item<int64_t>());
    mx = std::max(mx, ns.back());
  }
  at::Tensor padded = x;
  if (x.size(0) < mx) {
    auto shape = x.sizes().vec();
    shape[0] = mx - x.size(0);
    padded = at::cat({x, at::zeros(shape, x.options())}, 0);
  }
  auto parts = allgather_one(pg, padded);
  std::vector<at::Tensor> keep;
  for (size_t r = 0; r < parts.size(); r++) keep.push_back(parts[r].narrow(0, 0, ns[r]));
  *out = sc::wrap(at::cat(keep, 0));
  SC_END
}

sc_err sc_dist_barrier(sc_pg pg) {
  SC_BEGIN
  if (pg == nullptr) throw std::invalid_argument("nil process group");
  // a one-element all-reduce on the group's device: the same on Gloo and NCCL (NCCL's
  // barrier guesses a device per rank)
  std::vector<at::Tensor> v{at::zeros({1}, at::TensorOptions().device(pg->dev))};
  allreduce_bucket(pg, v, 1.0);
  SC_END
}

// sc_dist_silent_ranks reads every rank's heartbeat counter twice, wait_ms apart, and sets
// silent[r] = 1 for the ranks whose counter did not move (their process is gone or stuck).
// *store_lost = 1 when the store itself cannot be reached: rank 0, which serves it, is gone.
sc_err sc_dist_silent_ranks(sc_pg pg, int64_t wait_ms, int *silent, int *store_lost) {
  SC_BEGIN
  if (pg == nullptr) throw std::invalid_argument("nil process group");
  *store_lost = 0;
  for (int r = 0; r < pg->world; r++) silent[r] = 0;
  try {
    c10d::TCPStoreOptions o;
    o.port = static_cast<std::uint16_t>(pg->port);
    o.isServer = false;
    o.waitWorkers = false;
    o.timeout = ms(std::max<int64_t>(wait_ms, 1000));
    auto probe = c10::make_intrusive<c10d::TCPStore>(pg->host, o);
    std::vector<int64_t> a(pg->world), b(pg->world);
    for (int r = 0; r < pg->world; r++) a[r] = probe->add(hb_key(r), 0);
    std::this_thread::sleep_for(ms(wait_ms));
    for (int r = 0; r < pg->world; r++) b[r] = probe->add(hb_key(r), 0);
    for (int r = 0; r < pg->world; r++) silent[r] = (a[r] == b[r] && r != pg->rank) ? 1 : 0;
  } catch (...) {
    *store_lost = 1;
  }
  SC_END
}

}  // extern "C"
