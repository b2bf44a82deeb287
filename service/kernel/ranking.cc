// One-vs-rest score histograms of the softmax probabilities, as one custom op.
//
// Op ai.focal_eval::FocalRanking (version 1), attribute score_bins (H).
//   inputs   logits float [N, C], labels int64 [N], ignore_index int64 []
//   outputs  positive_histogram, negative_histogram int64 [C, H]
// The ranking graph's statistics (focal/ranking.py): for each valid row and each class k, the
// probability p_k = e_k / s (e_k = exp(x_k - max x), s = sum e_k) lands in bin floor(p_k H)
// (p = 1 in the last) of class k's positive histogram when k is the row's label, of its
// negative histogram otherwise.
// Rows are split into at most kParts fixed parts (by N alone), each with its own histograms,
// spread over onnxruntime's intra-op pool and added in order.

#include <algorithm>
#include <cmath>

#include "op.h"

namespace focal {
namespace {

constexpr const char* kOpName = "FocalRanking";
constexpr int64_t kParts = 8;
constexpr int64_t kPartRows = 1024;

struct Kernel {
  int64_t score_bins;
};

OrtStatus* error(const std::string& message) { return focal::error(kOpName, message); }

struct Batch {
  const float* logits;
  const int64_t* labels;
  int64_t ignore_index;
  int64_t n;
  int64_t c;
  int64_t score_bins;
};

struct Part {
  std::vector<int64_t> positive, every;  // [C, H]: the label's bins, and every class's
};

// A row is handled in whole vectors of this many floats (AVX-512's 16), copied into a buffer
// padded with -inf (probability 0), so that no element takes the slow scalar remainder.
constexpr int64_t kLanes = 16;

// The bins of one row's probabilities into `bins`: `x` padded to `c`, a multiple of kLanes;
// `e` holds the exponentials between the two passes.
FOCAL_CPU_DISPATCH void row_bins(const float* __restrict x, int64_t c, double score_bins,
                                 int32_t last, float* __restrict e, int32_t* __restrict bins) {
  float m = x[0];
#pragma omp simd reduction(max : m)
  for (int64_t k = 1; k < c; ++k) m = x[k] > m ? x[k] : m;
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t k = 0; k < c; ++k) {
    e[k] = exp_nonpositive(x[k] - m);
    s += e[k];
  }
  const float inverse = 1.0f / s;
#pragma omp simd
  for (int64_t k = 0; k < c; ++k) {
    const int32_t bin = static_cast<int32_t>(static_cast<double>(e[k] * inverse) * score_bins);
    bins[k] = bin < last ? bin : last;
  }
}

struct Work {
  const Batch* batch;
  std::vector<Part>* parts;
  int64_t part_rows;
};

void score_part(void* data, size_t index) {
  const Work& work = *static_cast<const Work*>(data);
  const Batch& b = *work.batch;
  Part& part = (*work.parts)[index];
  const int64_t width = (b.c + kLanes - 1) / kLanes * kLanes;
  std::vector<float> row(static_cast<size_t>(width), -INFINITY);
  std::vector<int32_t> bins(static_cast<size_t>(width));
  std::vector<float> exponentials(static_cast<size_t>(width));
  const int32_t last = static_cast<int32_t>(b.score_bins - 1);
  const int64_t begin = static_cast<int64_t>(index) * work.part_rows;
  const int64_t end = std::min(begin + work.part_rows, b.n);
  int64_t* every = part.every.data();
  for (int64_t i = begin; i < end; ++i) {
    const int64_t label = b.labels[i];
    if (label == b.ignore_index) continue;
    std::memcpy(row.data(), b.logits + i * b.c, sizeof(float) * b.c);
    row_bins(row.data(), width, static_cast<double>(b.score_bins), last, exponentials.data(),
             bins.data());
    for (int64_t k = 0; k < b.c; ++k) every[k * b.score_bins + bins[k]] += 1;
    part.positive[label * b.score_bins + bins[label]] += 1;
  }
}

OrtStatus* compute(const Kernel& kernel, OrtKernelContext* context) {
  Batch b{};
  std::vector<int64_t> logits_shape, labels_shape, scalar_shape;
  const int64_t* ignore_index = nullptr;
  FOCAL_TRY(input(context, 0, &b.logits, &logits_shape));
  FOCAL_TRY(input(context, 1, &b.labels, &labels_shape));
  FOCAL_TRY(input(context, 2, &ignore_index, &scalar_shape));
  if (logits_shape.size() != 2 || logits_shape[1] < 1)
    return error("logits must have shape [N, C] with C >= 1");
  b.n = logits_shape[0];
  b.c = logits_shape[1];
  if (labels_shape != std::vector<int64_t>{b.n}) return error("labels must have shape [N]");
  b.ignore_index = *ignore_index;
  b.score_bins = kernel.score_bins;
  for (int64_t i = 0; i < b.n; ++i) {
    const int64_t label = b.labels[i];
    if (label != b.ignore_index && (label < 0 || label >= b.c))
      return error("labels must be in [0, C) or equal to ignore_index; row " + std::to_string(i) +
                   " has " + std::to_string(label));
  }
  int64_t *positive = nullptr, *negative = nullptr;
  const std::vector<int64_t> shape{b.c, b.score_bins};
  FOCAL_TRY(output(context, 0, shape, &positive));
  FOCAL_TRY(output(context, 1, shape, &negative));
  const int64_t count = std::clamp<int64_t>(b.n / kPartRows, 1, kParts);
  const size_t cells = static_cast<size_t>(b.c * b.score_bins);
  std::vector<Part> parts(static_cast<size_t>(count),
                          Part{std::vector<int64_t>(cells), std::vector<int64_t>(cells)});
  Work work{&b, &parts, (b.n + count - 1) / count};
  if (b.n > 0)
    FOCAL_TRY(api->KernelContext_ParallelFor(context, score_part, static_cast<size_t>(count),
                                             0, &work));
  for (const Part& part : parts) {
    for (size_t cell = 0; cell < cells; ++cell) {
      positive[cell] += part.positive[cell];
      negative[cell] += part.every[cell] - part.positive[cell];
    }
  }
  return nullptr;
}

OrtStatus* create(const OrtKernelInfo* info, void** kernel) {
  int64_t score_bins = 0;
  FOCAL_TRY(api->KernelInfoGetAttribute_int64(info, "score_bins", &score_bins));
  if (score_bins < 1) return error("attribute score_bins must be >= 1");
  *kernel = new Kernel{score_bins};
  return nullptr;
}

OrtStatus* ORT_API_CALL run(void* kernel, OrtKernelContext* context) {
  return compute(*static_cast<Kernel*>(kernel), context);
}

void ORT_API_CALL destroy(void* kernel) { delete static_cast<Kernel*>(kernel); }

constexpr ONNXTensorElementDataType kFloat = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
constexpr ONNXTensorElementDataType kInt64 = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;

const OpSpec spec{kOpName, {kFloat, kInt64, kInt64}, {kInt64, kInt64}, create, run, destroy};

}  // namespace

Op ranking = make_op(&spec);

}  // namespace focal
