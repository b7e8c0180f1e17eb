// sc_mix_kernel.h - the body of the fused DRCNN forward (a chain of 1x1 layers with
// LeakyReLU between them) on a tile of channels-last pixels. sc_fused.cpp includes it twice,
// once under an AVX2+FMA target pragma and once for the baseline ISA, each time inside its own
// namespace; it includes nothing and must not be included anywhere else.
//
// Layer weights are stored transposed and zero-padded: wt[i * op + o] = W[o][i] for o < out,
// 0 for out <= o < op, where op is out rounded up to 8; bias padded the same way.

// mix_layer_fixed computes dst[p][o] = act(bias[o] + sum_i src[p][i] * wt[i][o]) for P
// pixels with OP (a multiple of 8, known at compile time) padded outputs, keeping the OP
// accumulators in OP/SC_MIX_VW vector registers over the whole input sum (GCC vector
// extensions; the includer defines SC_MIX_VW: 8 floats (ymm) under AVX2, 4 (xmm) otherwise).
typedef float mix_v8 __attribute__((vector_size(SC_MIX_VW * 4)));

template <int OP, int PB>
inline void mix_pixels(const float *src, long sstride, long I, const float *wt, const mix_v8 *b, bool act,
                       float slope, float *dst) {
  constexpr int NV = OP / SC_MIX_VW;
  mix_v8 acc[PB][NV];
#pragma GCC unroll 16
  for (int q = 0; q < PB; q++)
#pragma GCC unroll 16
    for (int k = 0; k < NV; k++) acc[q][k] = b[k];
  for (long i = 0; i < I; i++) {
    mix_v8 wk[NV];
#pragma GCC unroll 16
    for (int k = 0; k < NV; k++) __builtin_memcpy(&wk[k], wt + i * OP + SC_MIX_VW * k, sizeof(mix_v8));
#pragma GCC unroll 16
    for (int q = 0; q < PB; q++) {
      const float v = src[q * sstride + i];
#pragma GCC unroll 16
      for (int k = 0; k < NV; k++) acc[q][k] += v * wk[k];
    }
  }
#pragma GCC unroll 16
  for (int q = 0; q < PB; q++)
#pragma GCC unroll 16
    for (int k = 0; k < NV; k++) {
      mix_v8 r = acc[q][k];
      if (act) {
        const mix_v8 neg = r < 0.f ? r : 0.f;  // min(r, 0)
        r = (r - neg) + neg * slope;
      }
      __builtin_memcpy(dst + q * OP + SC_MIX_VW * k, &r, sizeof(mix_v8));
    }
}

// mix_layer_fixed runs mix_pixels over P pixels, several at a time so that independent
// accumulator chains hide the FMA latency (one pixel alone is latency-bound).
template <int OP>
void mix_layer_fixed(const float *src, long sstride, int P, long I, const float *wt, const float *bias,
                     bool act, float slope, float *dst) {
  constexpr int NV = OP / SC_MIX_VW;
  constexpr int PB = NV >= 4 ? 2 : (NV >= 2 ? 4 : 8);  // about 8 accumulators in flight
  mix_v8 b[NV];
  for (int k = 0; k < NV; k++) __builtin_memcpy(&b[k], bias + SC_MIX_VW * k, sizeof(mix_v8));
  int p = 0;  // P is a tile (at most a few hundred pixels)
  for (; p + PB <= P; p += PB)
    mix_pixels<OP, PB>(src + p * sstride, sstride, I, wt, b, act, slope, dst + static_cast<long>(p) * OP);
  for (; p < P; p++)  // the last P % PB pixels
    mix_pixels<OP, 1>(src + p * sstride, sstride, I, wt, b, act, slope, dst + static_cast<long>(p) * OP);
}

// mix_layer is mix_layer_fixed for any padded width op.
void mix_layer(const float *src, long sstride, long P, long I, const float *wt, const float *bias, long op,
               bool act, float slope, float *dst) {
  switch (op) {
    case 8: return mix_layer_fixed<8>(src, sstride, P, I, wt, bias, act, slope, dst);
    case 16: return mix_layer_fixed<16>(src, sstride, P, I, wt, bias, act, slope, dst);
    case 24: return mix_layer_fixed<24>(src, sstride, P, I, wt, bias, act, slope, dst);
    case 32: return mix_layer_fixed<32>(src, sstride, P, I, wt, bias, act, slope, dst);
    default: break;
  }
  for (long p = 0; p < P; p++) {
    float *d = dst + p * op;
    for (long o = 0; o < op; o++) d[o] = bias[o];
    const float *s = src + p * sstride;
    for (long i = 0; i < I; i++) {
      const float v = s[i];
      const float *w = wt + i * op;
      for (long o = 0; o < op; o++) d[o] += v * w[o];
    }
    if (act)
      for (long o = 0; o < op; o++) d[o] = d[o] > 0.f ? d[o] : d[o] * slope;
  }
}

// mix_tile runs all layers over P <= tile pixels of x (stride C) into out (stride the last
// layer's real width), with bufA/bufB scratch of P * (widest padded layer) floats each.
void mix_tile(const float *x, long C, long P, int nl, const float *const *wt, const float *const *bias,
              const long *in, const long *out, const long *op, const bool *act, float slope, float *bufA,
              float *bufB, float *y) {
  const float *src = x;
  long sstride = C;
  float *dst = bufA;
  for (int l = 0; l < nl; l++) {
    mix_layer(src, sstride, P, in[l], wt[l], bias[l], op[l], act[l], slope, dst);
    src = dst;
    sstride = op[l];
    dst = (dst == bufA) ? bufB : bufA;
  }
  const long O = out[nl - 1];
  for (long p = 0; p < P; p++)
    for (long o = 0; o < O; o++) y[p * O + o] = src[p * sstride + o];
}
