// The op schemas (one TORCH_LIBRARY for the whole library) and the tiny Python module whose
// import loads this shared object and so runs every registration in it.
#include <Python.h>
#include <torch/library.h>

#include "output_allocator.h"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

PyObject* release_cached_outputs_py(PyObject*, PyObject*) {
  return PyLong_FromLongLong(bridgedfast::release_cached_outputs());
}

// The calling thread's OpenMP team size (its own nthreads ICV: other threads keep theirs), for
// the loader's batch producers; returns the previous value (1 without OpenMP).
PyObject* set_thread_openmp_threads_py(PyObject*, PyObject* arg) {
  const long long n = PyLong_AsLongLong(arg);
  if (n == -1 && PyErr_Occurred()) return nullptr;
  if (n < 1 || n > 4096) {
    PyErr_Format(PyExc_ValueError, "set_thread_openmp_threads: threads must be in 1..4096, got %lld", n);
    return nullptr;
  }
#if defined(_OPENMP)
  const int previous = omp_get_max_threads();
  omp_set_num_threads(static_cast<int>(n));
  return PyLong_FromLong(previous);
#else
  return PyLong_FromLong(1);
#endif
}

PyMethodDef methods[] = {
    {"release_cached_outputs", release_cached_outputs_py, METH_NOARGS,
     "Frees the cached CPU output blocks no tensor uses; returns the bytes freed."},
    {"set_thread_openmp_threads", set_thread_openmp_threads_py, METH_O,
     "Sets the calling thread's OpenMP team size (other threads keep theirs); returns the previous one."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", "bridgedfast compiled ops", -1, methods};
  PyObject* module = PyModule_Create(&module_def);
  if (module == nullptr) return nullptr;
#if defined(BRIDGEDFAST_WITH_CUDA)
  PyModule_AddIntConstant(module, "cuda_compiled", 1);
#else
  PyModule_AddIntConstant(module, "cuda_compiled", 0);
#endif
  return module;
}
}

TORCH_LIBRARY(bridgedfast, m) {
  m.def("mix_images(Tensor x, Tensor lam, Tensor boxes) -> Tensor");
  m.def("mix_images.out(Tensor x, Tensor lam, Tensor boxes, *, Tensor(a!) out) -> Tensor(a!)", {at::Tag::out});
  m.def("gather_images(Tensor[] sources, Tensor items, Tensor(a!) out) -> ()");
  m.def("resized_crop(Tensor data, Tensor index, Tensor boxes, Tensor flip, int[] size, float[] mean, float[] std, bool antialias, ScalarType out_dtype, bool channels_last, Tensor? resize=None) -> Tensor");
  // resized_crop_into writes into a caller's buffer (e.g. the loader's recycled batches). It is a
  // separate op, not an out-tagged `resized_crop.out` overload: torch 2.14's inductor lowers a
  // functional custom op to its out-tagged overload and then passes the int[]/float[] arguments
  // flattened ("expected at most 12 argument(s) but received 18"). Under torch.compile the
  // mutation is functionalized like any mutable custom op. mix_images.out has no list arguments
  // and keeps the standard out overload.
  m.def("resized_crop_into(Tensor data, Tensor index, Tensor boxes, Tensor flip, int[] size, float[] mean, float[] std, bool antialias, ScalarType out_dtype, bool channels_last, Tensor? resize, Tensor(a!) out) -> ()");
  // The same two ops reading a list of uint8 [H, W, 3] tensors in place (no packing copy).
  m.def("resized_crop_list(Tensor[] images, Tensor boxes, Tensor flip, int[] size, float[] mean, float[] std, bool antialias, ScalarType out_dtype, bool channels_last, Tensor? resize=None) -> Tensor");
  m.def("resized_crop_list_into(Tensor[] images, Tensor boxes, Tensor flip, int[] size, float[] mean, float[] std, bool antialias, ScalarType out_dtype, bool channels_last, Tensor? resize, Tensor(a!) out) -> ()");
}
