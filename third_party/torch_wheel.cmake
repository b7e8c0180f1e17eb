# torch_wheel.cmake — LibTorch from a PyTorch wheel (pip install torch), CUDA build included.
#
# Input: SC_TORCH_PREFIX, the wheel's torch/ folder (torch.utils.cmake_prefix_path/../..).
# Output: the imported target sc_torch, Torch_VERSION, SC_TORCH_CUDA (ON when the wheel is a
# CUDA build), SC_NCCL_INCLUDE (when the wheel's NCCL headers are there), SC_CUDA_ROOT.
#
# Why not find_package(Torch) on a wheel: measured on Debian 12 with torch 2.11.0+cu130,
# - TorchConfig.cmake looks for Caffe2 and for libtorch/libc10 with PATHS, which CMake
#   searches after the system folders: with Debian's libtorch-dev installed it took Debian's
#   Caffe2Config.cmake and /usr/lib/x86_64-linux-gnu/libtorch.so (1.13) while the headers came
#   from the wheel, and linked that mix without a word;
# - Caffe2Config.cmake then demands a whole CUDA toolkit (nvcc, an unversioned libcudart.so, the
#   driver's libcuda.so), which a wheel install does not have and the shim does not need (it
#   compiles no .cu file).
# So this file reads the wheel's own description of its libraries (Caffe2Targets.cmake: the
# paths, include folders and compile definitions torch was built with) and supplies the three
# outside targets it names from the wheel itself: torch::cudart (nvidia/cu*/ cudart),
# protobuf::libprotobuf and caffe2::mkl (both linked statically into libtorch_cpu; empty here).
# Nothing outside the wheel's site-packages is used; check_inside below proves it.

get_filename_component(SC_SITE "${SC_TORCH_PREFIX}/.." ABSOLUTE)
set(_sc_cmake "${SC_TORCH_PREFIX}/share/cmake")

include("${_sc_cmake}/Torch/TorchConfigVersion.cmake")
set(Torch_VERSION "${PACKAGE_VERSION}")

# The CUDA runtime of a CUDA wheel: nvidia/cu13 (CUDA 13 wheels: one folder for all of the
# toolkit's parts) or nvidia/cuda_runtime (CUDA 12 wheels).
set(SC_TORCH_CUDA OFF)
set(SC_CUDA_ROOT "")
if(EXISTS "${SC_TORCH_PREFIX}/lib/libtorch_cuda.so")
  set(SC_TORCH_CUDA ON)
  file(GLOB _sc_cu_roots LIST_DIRECTORIES true "${SC_SITE}/nvidia/cu[0-9]*" "${SC_SITE}/nvidia/cuda_runtime")
  foreach(_r IN LISTS _sc_cu_roots)
    file(GLOB _sc_cudart "${_r}/lib/libcudart.so.[0-9]*")
    if(_sc_cudart AND EXISTS "${_r}/include/cuda_runtime_api.h")
      set(SC_CUDA_ROOT "${_r}")
      list(GET _sc_cudart 0 SC_CUDART)
      break()
    endif()
  endforeach()
  if(NOT SC_CUDA_ROOT)
    message(FATAL_ERROR "spectraclip_c: ${SC_TORCH_PREFIX} is a CUDA build of torch, but no CUDA runtime "
      "with headers was found under ${SC_SITE}/nvidia (pip install the wheel's CUDA dependencies, "
      "e.g. make deps TORCH=pip)")
  endif()
endif()

if(NOT TARGET torch::cudart)
  add_library(torch::cudart INTERFACE IMPORTED)
  if(SC_TORCH_CUDA)
    set(_sc_cuda_inc "${SC_CUDA_ROOT}/include")
    # CUDA 13 moved CCCL (nv/target, cub, thrust, cuda/std) to include/cccl; cuda_fp16.h,
    # which ATen's CUDA headers include, needs nv/target.
    if(EXISTS "${SC_CUDA_ROOT}/include/cccl/nv/target")
      list(APPEND _sc_cuda_inc "${SC_CUDA_ROOT}/include/cccl")
    endif()
    set_target_properties(torch::cudart PROPERTIES
      INTERFACE_INCLUDE_DIRECTORIES "${_sc_cuda_inc}"
      INTERFACE_LINK_LIBRARIES "${SC_CUDART}")
  endif()
endif()
foreach(_t protobuf::libprotobuf caffe2::mkl)
  if(NOT TARGET ${_t})
    add_library(${_t} INTERFACE IMPORTED)
  endif()
endforeach()

include("${_sc_cmake}/Caffe2/Caffe2Targets.cmake")

add_library(sc_torch INTERFACE IMPORTED)
set_target_properties(sc_torch PROPERTIES INTERFACE_LINK_LIBRARIES "torch;torch_library;c10"
  INTERFACE_INCLUDE_DIRECTORIES "${SC_TORCH_PREFIX}/include;${SC_TORCH_PREFIX}/include/torch/csrc/api/include")
if(SC_TORCH_CUDA)
  set_property(TARGET sc_torch APPEND PROPERTY INTERFACE_LINK_LIBRARIES c10_cuda torch_cuda)
endif()

# The ABI torch was built with, as torch.compiled_with_cxx11_abi() reports it.
execute_process(COMMAND nm -D --defined-only "${SC_TORCH_PREFIX}/lib/libc10.so"
  OUTPUT_VARIABLE _sc_syms ERROR_QUIET)
if(_sc_syms MATCHES "__cxx11")
  set(TORCH_CXX_FLAGS "-D_GLIBCXX_USE_CXX11_ABI=1")
else()
  set(TORCH_CXX_FLAGS "-D_GLIBCXX_USE_CXX11_ABI=0")
endif()

# NCCL's header from the nvidia-nccl wheel (only there: never a system nccl.h).
if(SC_TORCH_CUDA)
  find_path(SC_NCCL_INCLUDE nccl.h PATHS "${SC_SITE}/nvidia/nccl/include" NO_DEFAULT_PATH)
endif()

# check_inside: every library file that the targets resolve to lies inside site-packages.
foreach(_t torch torch_cpu torch_cuda c10 c10_cuda)
  if(TARGET ${_t})
    get_target_property(_loc ${_t} IMPORTED_LOCATION_RELEASE)
    if(NOT _loc)
      get_target_property(_loc ${_t} IMPORTED_LOCATION)
    endif()
    get_filename_component(_loc "${_loc}" REALPATH)
    string(FIND "${_loc}" "${SC_SITE}/" _at)
    if(NOT _at EQUAL 0)
      message(FATAL_ERROR "spectraclip_c: ${_t} resolves to ${_loc}, outside ${SC_SITE}")
    endif()
  endif()
endforeach()
