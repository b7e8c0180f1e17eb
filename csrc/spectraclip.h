/*
 * spectraclip.h - the plain C ABI over LibTorch that the Go package torch/ calls.
 *
 * Conventions (learned from gotorch's C ABI, without its flaws):
 *  - Handles are opaque pointers owned by the caller; each has exactly one free function.
 *  - Every fallible entry point returns sc_err: NULL on success, otherwise a malloc'd,
 *    NUL-terminated message that the caller releases with sc_free_string. The error is
 *    returned by the same call, never through thread-local storage.
 *  - Results come back through out-parameters.
 *  - Thread-local LibTorch state (grad mode) is set by a guard inside each call from the
 *    `mode` argument, because a goroutine may change OS thread between two calls.
 *  - No C++ exception ever crosses this boundary: every body catches c10::Error,
 *    std::exception and (...).
 */
#ifndef SPECTRACLIP_H
#define SPECTRACLIP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sc_tensor_s *sc_tensor;
typedef struct sc_module_s *sc_module;
typedef struct sc_optim_s *sc_optim;
typedef struct sc_gen_s *sc_gen;
typedef char *sc_err;

/* mode bits */
#define SC_MODE_NOGRAD 1

/* dtypes */
enum {
  SC_FLOAT32 = 0,
  SC_FLOAT64 = 1,
  SC_FLOAT16 = 2,
  SC_BFLOAT16 = 3,
  SC_INT64 = 4,
  SC_INT32 = 5,
  SC_UINT8 = 6,
  SC_BOOL = 7,
  SC_INT8 = 8,
  SC_INT16 = 9
};

/* device types */
enum { SC_CPU = 0, SC_CUDA = 1 };

void sc_free_string(char *s);

/* ---- library ---- */
sc_err sc_version(char **out);
int sc_cuda_device_count(void);
int sc_cuda_is_available(void);
sc_err sc_manual_seed(uint64_t seed);      /* the CPU generator */
sc_err sc_manual_seed_cuda(uint64_t seed); /* every CUDA generator (no-op without CUDA) */
sc_err sc_set_num_threads(int n);
int sc_get_num_threads(void);
/* The intra-op thread count LibTorch has on the calling OS thread right now, without
 * applying the wanted count first (a diagnostic: tests show that ops apply it). */
int sc_thread_num_threads(void);
/* TF32 for CUDA float32 matmuls (cuBLAS) and convolutions (cuDNN), process-wide: 1 allow,
 * 0 forbid, -1 leave as is. Compiles and runs without CUDA (the flags then act on nothing). */
// sc_set_deterministic: LibTorch's deterministic algorithms (warn-only) and cuDNN's
// deterministic mode on or off, process-wide; sc_get_deterministic reads both (1: both on).
sc_err sc_set_deterministic(int on);
// sc_parallel_threads: how many distinct threads at::parallel_for, as the shim's own kernels
// call it, ran n items on (for tests).
sc_err sc_parallel_threads(int64_t n, int *threads);
sc_err sc_get_deterministic(int *on);
sc_err sc_set_allow_tf32(int matmul, int conv);
sc_err sc_get_allow_tf32(int *matmul, int *conv);
sc_err sc_set_caching_allocator(int enable);
sc_err sc_cpu_allocator_stats(int64_t *cached_bytes, int64_t *hits, int64_t *misses);
sc_err sc_cuda_synchronize(int device);
sc_err sc_cuda_memory(int device, int64_t *allocated, int64_t *reserved, int64_t *peak);
/* Runs n additions of a and b in C++ alone and reports the elapsed nanoseconds: the
 * baseline against which the Go binding's per-op overhead is measured. */
sc_err sc_bench_add_loop(sc_tensor a, sc_tensor b, int64_t n, int use_out, int64_t *ns);

/* ---- tensor lifetime and metadata ---- */
void sc_tensor_free(sc_tensor t);
/* Frees n handles (NULL entries are skipped) in one call: a scope's Close. */
void sc_tensor_free_many(const sc_tensor *ts, int64_t n);
sc_err sc_tensor_dim(sc_tensor t, int64_t *ndim);
sc_err sc_tensor_shape(sc_tensor t, int64_t *shape /* at least ndim */);
sc_err sc_tensor_info(sc_tensor t, int *dtype, int *device_type, int *device_index,
                      int *requires_grad, int64_t *numel);
sc_err sc_tensor_shallow_clone(sc_tensor t, sc_tensor *out);

/* ---- creation and data ---- */
sc_err sc_empty(const int64_t *shape, int ndim, int dtype, int dev_type, int dev_index,
                sc_tensor *out);
sc_err sc_full(const int64_t *shape, int ndim, double value, int dtype, int dev_type,
               int dev_index, sc_tensor *out);
sc_err sc_from_data(const void *data, int64_t nbytes, const int64_t *shape, int ndim,
                    int dtype, int dev_type, int dev_index, sc_tensor *out);
/* Copies the tensor's elements, converted to dtype, into data (row-major). */
sc_err sc_copy_out(sc_tensor t, void *data, int64_t nbytes, int dtype);
/* Overwrites the tensor's elements from data given in dtype (converted as needed). */
sc_err sc_copy_in(sc_tensor t, const void *data, int64_t nbytes, int dtype);
sc_err sc_arange(double start, double end, double step, int dtype, int dev_type,
                 int dev_index, sc_tensor *out);
sc_err sc_eye(int64_t n, int dtype, int dev_type, int dev_index, sc_tensor *out);
/* kind: 0 rand (uniform [0,1)), 1 randn, 2 uniform [lo,hi), 3 randint [lo,hi) */
sc_err sc_random(int kind, const int64_t *shape, int ndim, double lo, double hi, int dtype,
                 int dev_type, int dev_index, sc_gen gen /* nullable */, sc_tensor *out);
sc_err sc_to(int mode, sc_tensor t, int dtype, int dev_type, int dev_index, int copy,
             sc_tensor *out);
sc_err sc_item(sc_tensor t, double *out);

/* ---- generic ops ----
 * op codes are defined in ops.go / sc_ops.cpp and must stay in sync. */
sc_err sc_unary(int op, int mode, sc_tensor a, double s1, double s2, sc_tensor *out);
sc_err sc_unary_(int op, int mode, sc_tensor a, double s1, double s2);
sc_err sc_binary(int op, int mode, sc_tensor a, sc_tensor b, sc_tensor *out);
sc_err sc_binary_(int op, int mode, sc_tensor a, sc_tensor b);
sc_err sc_binary_out(int op, int mode, sc_tensor a, sc_tensor b, sc_tensor out);
sc_err sc_reduce(int op, int mode, sc_tensor a, const int64_t *dims, int ndims, int keepdim,
                 double p, sc_tensor *out);
sc_err sc_shape_op(int op, int mode, sc_tensor a, const int64_t *ints, int n, sc_tensor *out);
sc_err sc_softmax(int log, int mode, sc_tensor a, int64_t dim, sc_tensor *out);
sc_err sc_narrow(int mode, sc_tensor a, int64_t dim, int64_t start, int64_t length,
                 sc_tensor *out);
sc_err sc_select(int mode, sc_tensor a, int64_t dim, int64_t index, sc_tensor *out);
sc_err sc_index_select(int mode, sc_tensor a, int64_t dim, sc_tensor index, sc_tensor *out);
sc_err sc_gather(int mode, sc_tensor a, int64_t dim, sc_tensor index, sc_tensor *out);
sc_err sc_masked_select(int mode, sc_tensor a, sc_tensor mask, sc_tensor *out);
sc_err sc_cat(int mode, const sc_tensor *ts, int n, int64_t dim, int stack, sc_tensor *out);
sc_err sc_where(int mode, sc_tensor cond, sc_tensor a, sc_tensor b, sc_tensor *out);
sc_err sc_clamp_t(int mode, sc_tensor a, sc_tensor lo, sc_tensor hi, sc_tensor *out);
sc_err sc_copy_(sc_tensor dst, sc_tensor src);
sc_err sc_linear(int mode, sc_tensor x, sc_tensor w, sc_tensor b /* nullable */, sc_tensor *out);
sc_err sc_conv2d(int mode, sc_tensor x, sc_tensor w, sc_tensor b /* nullable */,
                 const int64_t *stride, const int64_t *padding, const int64_t *dilation,
                 int64_t groups, sc_tensor *out);
/* method: 0 nearest, 1 bilinear, 2 bicubic */
sc_err sc_interpolate(int mode, sc_tensor x, int64_t oh, int64_t ow, int method,
                      int align_corners, int antialias, sc_tensor *out);
sc_err sc_avg_pool2d(int mode, sc_tensor x, const int64_t *kernel, const int64_t *stride,
                     const int64_t *padding, int count_include_pad, sc_tensor *out);
sc_err sc_pad(int mode, sc_tensor x, const int64_t *pads, int npads, int padmode,
              double value, sc_tensor *out);
sc_err sc_topk(int mode, sc_tensor a, int64_t k, int64_t dim, int largest, int sorted,
               sc_tensor *values, sc_tensor *indices);
sc_err sc_sort(int mode, sc_tensor a, int64_t dim, int descending, sc_tensor *values,
               sc_tensor *indices);
sc_err sc_kthvalue(int mode, sc_tensor a, int64_t k, int64_t dim, int keepdim,
                   sc_tensor *values, sc_tensor *indices);
/* dim < -100 means: over all elements */
sc_err sc_quantile(int mode, sc_tensor a, double q, int64_t dim, int keepdim,
                   sc_tensor *out);
sc_err sc_max_dim(int mode, sc_tensor a, int64_t dim, int keepdim, int min,
                  sc_tensor *values, sc_tensor *indices);
sc_err sc_eigh(sc_tensor a, sc_tensor *evals, sc_tensor *evecs);
sc_err sc_svd(sc_tensor a, int full_matrices, sc_tensor *u, sc_tensor *s, sc_tensor *vh);
sc_err sc_pinv(sc_tensor a, sc_tensor *out);

/* ---- autograd ---- */
sc_err sc_set_requires_grad(sc_tensor t, int on);
sc_err sc_backward(sc_tensor t, sc_tensor grad /* nullable */, int retain_graph);
/* *out is NULL when the tensor has no gradient. */
sc_err sc_grad(sc_tensor t, sc_tensor *out);
sc_err sc_zero_grad(sc_tensor t, int set_to_none);
sc_err sc_clip_grad_norm(const sc_tensor *params, int n, double max_norm, double norm_type,
                         double *total_norm);

/* ---- fused kernels (sc_fused.cpp) ---- */
/* Gumbel-Softmax over the last dim: softmax((logits + g)/tau) with
 * g = -log(-log(u + eps) + eps), u ~ U[0,1) from gen (or the default generator);
 * hard != 0: one-hot of the argmax in the forward pass, soft gradient (straight-through). */
sc_err sc_gumbel_softmax(int mode, sc_tensor logits, double tau, double eps, int hard,
                         sc_gen gen, sc_tensor *out);
/* Min-max normalisation of a channels-last [B,H,W,C] tensor.
 * per_image != 0: per image and channel over H x W; else one global scalar min/max
 * (taken from the tensor, or from (lo, hi) when use_given != 0). */
sc_err sc_minmax(int mode, sc_tensor x, int per_image, int use_given, double lo, double hi,
                 double eps, int clamp, sc_tensor *out);
/* Gaussian blur of [B,H,W] or [B,1,H,W] maps; radius <= 0 picks floor(3 sigma)+1;
 * padmode 0 zero, 1 reflect (scipy half-sample symmetric), 2 mirror, 3 replicate. */
sc_err sc_gaussian_blur(int mode, sc_tensor x, double sigma, int64_t radius, int padmode,
                        sc_tensor *out);

/* ---- generators ---- */
sc_err sc_gen_new(uint64_t seed, int dev_type, int dev_index, sc_gen *out);
void sc_gen_free(sc_gen g);
sc_err sc_gen_get_state(sc_gen g, sc_tensor *out);
sc_err sc_gen_set_state(sc_gen g, sc_tensor state);
sc_err sc_default_gen_state(int get, sc_tensor *state);

/* ---- serialisation ---- */
sc_err sc_save_tensors(const char *path, const char **names, const sc_tensor *ts, int n);
/* Loads every tensor of an archive; names and tensors arrays are malloc'd and owned by
 * the caller (free names with sc_free_string each and the arrays with sc_free_array). */
sc_err sc_load_tensors(const char *path, int dev_type, int dev_index, char ***names,
                       sc_tensor **ts, int *n);
void sc_free_array(void *p);

/* ---- TorchScript ---- */
sc_err sc_jit_load(const char *path, int dev_type, int dev_index, sc_module *out);
sc_err sc_jit_new(const char *name, sc_module *out);
sc_err sc_jit_define(sc_module m, const char *src);
sc_err sc_jit_register_buffer(sc_module m, const char *name, sc_tensor t);
sc_err sc_jit_register_parameter(sc_module m, const char *name, sc_tensor t);
/* kind: 0 int, 1 double, 2 string, 3 bool */
sc_err sc_jit_register_attr(sc_module m, const char *name, int kind, int64_t i, double d,
                            const char *s);
void sc_jit_free(sc_module m);
sc_err sc_jit_save(sc_module m, const char *path);
/* Runs method (forward when NULL); tuple/list outputs are flattened into outs, which is
 * malloc'd and owned by the caller (sc_free_array). */
sc_err sc_jit_run(int mode, sc_module m, const char *method, const sc_tensor *ins, int nin,
                  sc_tensor **outs, int *nout);
/* kind out: 0 int, 1 double, 2 string, 3 bool, 4 tensor, -1 missing */
sc_err sc_jit_attr(sc_module m, const char *name, int *kind, int64_t *i, double *d, char **s,
                   sc_tensor *t);
sc_err sc_jit_to(sc_module m, int dtype /* -1 keep */, int dev_type, int dev_index);
sc_err sc_jit_train(sc_module m, int on);
sc_err sc_jit_requires_grad(sc_module m, int on);
sc_err sc_jit_has_method(sc_module m, const char *name, int *has);
/* Named parameters (recursive); arrays owned by the caller as in sc_load_tensors. */
sc_err sc_jit_parameters(sc_module m, char ***names, sc_tensor **ts, int *n);

/* ---- AOTInductor packages (.pt2, sc_aoti.cpp) ----
 * A package written by torch._inductor.aoti_compile_and_package, run through LibTorch's
 * AOTIModelPackageLoader (LibTorch 2.6 or newer; on older builds every call fails with one
 * line saying so). Forward only: no autograd through a package. */
typedef struct sc_aoti_s *sc_aoti;
/* NULL when this build can run packages, else why not (static, never freed). */
const char *sc_aoti_unavailable(void);
/* Loads the package's model model_name (NULL: "model") for dev_type/dev_index, which must be
 * the device kind the package was compiled for. num_runners (>= 1) is how many calls may run
 * at once. A package recording "spectraclip.torch_version" must match this LibTorch's
 * version. */
sc_err sc_aoti_load(const char *path, const char *model_name, int dev_type, int dev_index,
                    int num_runners, sc_aoti *out);
void sc_aoti_free(sc_aoti m);
/* Runs the model on ins (made contiguous first; each must be on the package's device and,
 * where the package records "spectraclip.inputs", match its dtype and shape); outs is
 * malloc'd and owned by the caller (sc_free_array). */
sc_err sc_aoti_run(sc_aoti m, const sc_tensor *ins, int nin, sc_tensor **outs, int *nout);
/* The package's metadata: keys and values are malloc'd arrays of malloc'd strings (free each
 * with sc_free_string, the arrays with sc_free_array). */
sc_err sc_aoti_metadata(sc_aoti m, char ***keys, char ***values, int *n);
/* The fully qualified names of the package's constants (weights, buffers), same ownership. */
sc_err sc_aoti_constant_names(sc_aoti m, char ***names, int *n);
/* The metadata of the package at path (model_name "" = "model") without loading its code:
 * sorted keys and values, each array and string malloc'd (sc_free_string / sc_free_array). */
sc_err sc_aoti_package_metadata(const char *path, const char *model_name, char ***keys, char ***values, int *n);

/* ---- optimizers ---- */
/* kind: 0 sgd, 1 adam, 2 adamw */
sc_err sc_optim_new(int kind, const sc_tensor *params, int n, double lr, double beta1,
                    double beta2, double eps, double weight_decay, double momentum,
                    int nesterov, sc_optim *out);
void sc_optim_free(sc_optim o);
sc_err sc_optim_step(sc_optim o);
sc_err sc_optim_zero_grad(sc_optim o);
sc_err sc_optim_get_lr(sc_optim o, double *lr);
sc_err sc_optim_set_lr(sc_optim o, double lr);
sc_err sc_optim_save(sc_optim o, const char *path);
sc_err sc_optim_load(sc_optim o, const char *path);

/* ---- data-parallel collectives over c10d (sc_dist.cpp) ----
 * One process group per process: a TCPStore (served by rank 0) for the rendezvous and
 * ProcessGroupGloo (CPU tensors) or ProcessGroupNCCL (CUDA tensors, CUDA builds with NCCL).
 * Every collective waits at most the group's timeout and then fails. */
typedef struct sc_pg_s *sc_pg;
enum { SC_DIST_GLOO = 0, SC_DIST_NCCL = 1 };
/* gloo_ifname / gloo_hostname (either may be NULL or empty) pick Gloo's network device:
 * by interface name, else by the address a hostname resolves to, else Gloo's default. */
sc_err sc_dist_init(const char *master_addr, int port, int rank, int world, int backend,
                    int device_index, int64_t timeout_ms, const char *gloo_ifname,
                    const char *gloo_hostname, sc_pg *out);
void sc_dist_free(sc_pg pg);
int sc_dist_nccl_available(void);
// sc_dist_gloo_unavailable: NULL when the Gloo backend is built in, else why not (static).
const char *sc_dist_gloo_unavailable(void);
// sc_nccl_blocking_wait_env: the variable this LibTorch's NCCL process group reads for
// blocking wait (TORCH_NCCL_BLOCKING_WAIT on 2.x, NCCL_BLOCKING_WAIT on 1.x); static.
const char *sc_nccl_blocking_wait_env(void);
// sc_build_info: how the shim was built: "cuda compiled (CUDA runtime 13.0); c10d backends:
// nccl 2.28.9" or "cuda not compiled; c10d backends: gloo".
sc_err sc_build_info(char **out);
// sc_dist_wait_unfinished waits, as every collective does, on a c10d::Work that never
// completes, for a group's rank, world size and timeout: the error every backend's timeout
// becomes (LibTorch 1.13 returns false from Work::wait, 2.x throws). For tests.
sc_err sc_dist_wait_unfinished(int rank, int world, int64_t timeout_ms);
/* Sums the tensors across ranks in place, one flat bucket per dtype, then multiplies by
 * scale (1/world for a mean). */
sc_err sc_dist_allreduce(sc_pg pg, const sc_tensor *ts, int n, double scale);
/* Overwrites the tensors with root's, one by one. */
sc_err sc_dist_broadcast(sc_pg pg, const sc_tensor *ts, int n, int root);
/* Every rank's tensor concatenated along dim 0 in rank order (dim-0 sizes may differ). */
sc_err sc_dist_allgather(sc_pg pg, sc_tensor t, sc_tensor *out);
sc_err sc_dist_barrier(sc_pg pg);
/* silent (world ints): 1 for ranks whose heartbeat did not move within wait_ms;
 * *store_lost = 1 when the store (rank 0) cannot be reached. */
sc_err sc_dist_silent_ranks(sc_pg pg, int64_t wait_ms, int *silent, int *store_lost);

/* ---- reducer kernels (sc_fused.cpp) ----
 * 1x1 convolution of x [B,C,H,W] (usually a channels-last view) with w [O,C,1,1]; b may be
 * NULL. Float32 CPU goes to oneDNN directly (conv2d's 1-thread path is im2col + BLAS). */
sc_err sc_conv1x1(int mode, sc_tensor x, sc_tensor w, sc_tensor b, sc_tensor *out);
/* The DRCNN mixer's forward in one pass (no autograd): x [B,H,W,C] float32 CPU through n
 * layers ws[i] [O_i,I_i,1,1] (or [O_i,I_i]) with biases bs[i] (bs or an entry may be NULL),
 * LeakyReLU(slope) after the hidden layers when act_hidden, after the last when act_last.
 * Returns [B,H,W,O_last]. Fails when gradients are on and an input requires them. */
sc_err sc_mix_chain(int mode, sc_tensor x, const sc_tensor *ws, const sc_tensor *bs, int n, double slope,
                    int act_hidden, int act_last, sc_tensor *out);
/* The detector's pre-processing of rgb [B,H,W,3] float32 CPU in three passes (no autograd):
 * per-image range ([0,255] when max > 1) and clamp to [0,1] with the BHWC -> BCHW transpose,
 * antialiased bicubic resize to size x size, CLIP normalisation (x - mean) / std; mean and
 * std hold 3 values. Returns [B,3,size,size], the same bits as the composed ops. */
sc_err sc_clip_preprocess(int mode, sc_tensor rgb, int64_t size, sc_tensor mean, sc_tensor std_,
                          sc_tensor *out);
/* Frees every block the caching CPU allocator holds unused (e.g. a statistical fit's float64
 * temporaries, whose sizes inference never asks for again); *released_bytes may be NULL. */
sc_err sc_cpu_allocator_trim(int64_t *released_bytes);

/* ---- CPU tensor memory (sc_view.cpp) ----
 * The address and size in bytes of a contiguous CPU tensor's elements; valid while the tensor
 * lives and is not resized. An error for a tensor on another device or not contiguous. */
sc_err sc_cpu_data(sc_tensor t, void **data, int64_t *nbytes);

#ifdef __cplusplus
}
#endif

#endif /* SPECTRACLIP_H */
