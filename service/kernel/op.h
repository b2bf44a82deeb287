// What the kernel's custom ops share: onnxruntime's C API, tensors in and out, a custom op from
// a table of types and two callbacks, and the vectorizable exp and log1p the row loops use.
#pragma once

#include <onnxruntime_c_api.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

// x86-64 builds carry a baseline, an AVX2 + FMA (x86-64-v3) and an AVX-512 (x86-64-v4) copy of
// a function, chosen at load time by the CPU (GCC's target_clones); elsewhere, or when built
// with FOCAL_ONE_COPY defined (the tests' way to run the baseline copy), one generic copy.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(FOCAL_ONE_COPY)
#define FOCAL_COPIES_BY_CPU 1
#define FOCAL_CPU_DISPATCH \
  __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define FOCAL_CPU_DISPATCH
#endif

#define FOCAL_INLINE inline __attribute__((always_inline))

#define FOCAL_TRY(call)                              \
  do {                                               \
    if (OrtStatus* status_ = (call)) return status_; \
  } while (0)

namespace focal {

constexpr uint32_t kApiVersion = 17;  // KernelContext_ParallelFor: onnxruntime >= 1.17
constexpr const char* kDomain = "ai.focal_eval";

extern const OrtApi* api;  // set by RegisterCustomOps

// An INVALID_ARGUMENT status: "<op>: <message>".
OrtStatus* error(const char* op, const std::string& message);

// Input `index`: its data and shape.
OrtStatus* input_shape(OrtKernelContext* context, size_t index, const OrtValue** value,
                       std::vector<int64_t>* shape);

template <typename T>
OrtStatus* input(OrtKernelContext* context, size_t index, const T** data,
                 std::vector<int64_t>* shape) {
  const OrtValue* value = nullptr;
  FOCAL_TRY(input_shape(context, index, &value, shape));
  void* raw = nullptr;
  FOCAL_TRY(api->GetTensorMutableData(const_cast<OrtValue*>(value), &raw));
  *data = static_cast<const T*>(raw);
  return nullptr;
}

// Output `index` of `shape`, zeroed.
template <typename T>
OrtStatus* output(OrtKernelContext* context, size_t index, const std::vector<int64_t>& shape,
                  T** data) {
  OrtValue* value = nullptr;
  FOCAL_TRY(api->KernelContext_GetOutput(context, index, shape.data(), shape.size(), &value));
  void* raw = nullptr;
  FOCAL_TRY(api->GetTensorMutableData(value, &raw));
  size_t count = 1;
  for (int64_t dim : shape) count *= static_cast<size_t>(dim);
  std::memset(raw, 0, count * sizeof(T));
  *data = static_cast<T*>(raw);
  return nullptr;
}

constexpr ONNXTensorElementDataType kFloat = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
constexpr ONNXTensorElementDataType kInt64 = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
constexpr ONNXTensorElementDataType kDouble = ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE;

// The integer attribute `name` of a node of `op` into `value`; it must be >= 1.
OrtStatus* count_attribute(const OrtKernelInfo* info, const char* op, const char* name,
                           int64_t* value);

// A custom op: its name, its tensor types, and how to create, run and destroy its kernel.
struct OpSpec {
  const char* name;
  std::vector<ONNXTensorElementDataType> inputs;
  std::vector<ONNXTensorElementDataType> outputs;
  OrtStatus* (*create)(const OrtKernelInfo* info, void** kernel);
  OrtStatus* (*compute)(void* kernel, OrtKernelContext* context);
  void (*destroy)(void* kernel);
};

// The OrtCustomOp onnxruntime takes, with the spec it reads its answers from.
struct Op {
  OrtCustomOp base;  // first: onnxruntime's pointer to it is a pointer to the Op
  const OpSpec* spec;
};

Op make_op(const OpSpec* spec);

// The kernel's ops (multiclass.cc, multilabel.cc).
extern Op multiclass_evaluation;
extern Op multiclass_evaluation_ranking;
extern Op multilabel_evaluation;

// Four or eight floats, or int32s, as one value (GCC's vector extensions). Arithmetic and
// comparisons work lane by lane; a comparison gives -1 (true) or 0 per lane, and
// `mask ? a : b` selects lane by lane. A vector wider than the processor's registers is
// compiled lane by lane for comparisons and selects, so each copy of a row loop takes the
// width of its processor: 8 with AVX2 and up, 4 with SSE2 or NEON.
typedef float Floats4 __attribute__((vector_size(16)));
typedef int32_t Ints4 __attribute__((vector_size(16)));
typedef float Floats8 __attribute__((vector_size(32)));
typedef int32_t Ints8 __attribute__((vector_size(32)));

template <typename F>
constexpr int32_t kLanes = sizeof(F) / sizeof(float);

template <typename F>
FOCAL_INLINE F load(const float* p) {  // any alignment
  F v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Integer truncation, for a float or lane by lane.
FOCAL_INLINE int32_t truncated(float x) { return static_cast<int32_t>(x); }
FOCAL_INLINE Ints4 truncated(Floats4 x) { return __builtin_convertvector(x, Ints4); }
FOCAL_INLINE Ints8 truncated(Floats8 x) { return __builtin_convertvector(x, Ints8); }

// The bits of an int32 (or of each lane) read as float32.
template <typename F, typename I>
FOCAL_INLINE F from_bits(I bits) {
  static_assert(sizeof(F) == sizeof(I), "as many lanes");
  F x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

// exp(x) for x <= 0, to about 1 ulp, for a float or lane by lane (the same bits either way):
// x = n ln 2 + r with |r| <= ln(2) / 2, e^r by its Taylor polynomial of degree 7 (remainder
// below 6e-9), 2^n written into the exponent bits. Below -87 the result is 0 (exp(-87) is
// near the smallest normal float). Plain arithmetic, no calls or branches, so that the
// compiler vectorizes the loops that use it.
template <typename F>
FOCAL_INLINE F exp_nonpositive(F x) {
  const F low = F{} + -87.0f;
  const F z = x < low ? low : x;
  const F shifter = F{} + 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const F n = (z * 1.44269504088896341f + shifter) - shifter;
  const F r = (z - n * 0.693359375f) - n * -2.12194440e-4f;  // ln 2 in two parts
  F p = F{} + 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const F scale = from_bits<F>((truncated(n) + 127) << 23);
  return x < low ? F{} : p * scale;
}

// log(1 + e) for e in [0, 1], to about 1 ulp: 2 atanh(z) with z = e / (2 + e) in [0, 1/3]
// (formed without cancellation), its series to z^13 (remainder below 5e-9 relative).
FOCAL_INLINE float log1p_unit(float e) {
  const float z = e / (2.0f + e);
  const float z2 = z * z;
  float p = 1.0f / 13.0f;
  p = p * z2 + 1.0f / 11.0f;
  p = p * z2 + 1.0f / 9.0f;
  p = p * z2 + 1.0f / 7.0f;
  p = p * z2 + 1.0f / 5.0f;
  p = p * z2 + 1.0f / 3.0f;
  p = p * z2 + 1.0f;
  return 2.0f * z * p;
}

// log(x) for a normal x > 0, to about 1 ulp: x = 2^e m with m in [1, 2) read from the bits,
// log x = e ln 2 + log(1 + (m - 1)). Vectorizable like exp_nonpositive.
FOCAL_INLINE float log_positive(float x) {
  int32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  const float exponent = static_cast<float>(((bits >> 23) & 0xff) - 127);
  const float mantissa = from_bits<float>((bits & 0x7fffff) | 0x3f800000);
  return exponent * 0.693147180559945309f + log1p_unit(mantissa - 1.0f);
}

// Whether x[0..count) are all finite: x - x is 0 for a finite x, NaN for an infinite or NaN
// one, and NaN survives the sum (no -ffast-math here). Found in a pass the kernels make anyway.
FOCAL_INLINE bool all_finite(const float* __restrict x, int64_t count) {
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t k = 0; k < count; ++k) sum += x[k] - x[k];
  return sum == 0.0f;
}

// The error of a run that met one.
constexpr const char* kNonFinite = "logits must be finite (NaN or infinite values)";

}  // namespace focal
