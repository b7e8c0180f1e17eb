// sc_view.cpp - a CPU tensor's memory handed to the caller, so that a reader can decode a file
// straight into the tensor a pipeline then consumes (no staging copy).
#include <stdexcept>

#include "sc_common.h"

using sc::T;

extern "C" {

sc_err sc_cpu_data(sc_tensor t, void **data, int64_t *nbytes) {
  SC_BEGIN
  at::Tensor &x = T(t);
  if (!x.is_cpu())
    throw std::invalid_argument("tensor is on " + x.device().str() + ", not the CPU");
  if (!x.is_contiguous()) throw std::invalid_argument("tensor is not contiguous");
  *data = x.data_ptr();
  *nbytes = x.numel() * static_cast<int64_t>(x.element_size());
  SC_END
}

}  // extern "C"
