// The multi-class evaluation step as one custom op: a single pass over each row.
//
// Op ai.focal_eval::FocalEvaluation (version 1), attribute num_bins (int, B).
//   inputs   logits float [N, C], labels int64 [N], alpha float [C], gamma float [],
//            ignore_index int64 []
//   outputs  focal_loss, cross_entropy, p_true float [N], prediction int64 [N],
//            confidence float [N], confusion_matrix int64 [C, C], focal_loss_sum,
//            cross_entropy_sum, alpha_sum, brier_sum float64 [C], bin_count int64 [B],
//            bin_confidence_sum float64 [B], bin_correct int64 [B]
// The same outputs, in the same order, as the evaluation graph's per-sample values and
// statistics (focal/statistics.py); the metrics are the metrics graph's, once per request.
// Op ai.focal_eval::FocalEvaluationRanking (version 1), attributes num_bins and score_bins
// (H): the same, and the ranking graph's statistics (focal/ranking.py) from the same pass:
// positive_histogram, negative_histogram int64 [C, H], each valid row's probability of each
// class p_k in bin floor(p_k H) (p = 1 in the last) of class k's positive histogram when k
// is its label, of the negative one otherwise.
//
// Per row, with m = max_k x_k, a = the first k with x_k = m, e_k = exp(x_k - m), t the label:
//   s = sum_k e_k                    cross entropy  CE = log s - (x_t - m)
//   r = sum_{k != t} e_k / s         1 - p_t, summed over the other classes, never 1 - p_t
//   FL = alpha_t exp(gamma log max(r, FLT_MIN)) CE
//   Brier = sum_{k != t} e_k^2 / s^2 + r^2   (no cancellation near p_t = 1)
//   confidence = 1 / s, p_true = e_t / s
// A logit that is NaN or infinite fails the run (kNonFinite), found as each row is read, so
// that the service need not read every logit once more beforehand.
// A row is read in place, 4 or 8 lanes at a time (by processor), in two passes: the maximum
// (with each lane's first index of its maximum, and whether every logit is finite), then the
// exponentials' sums, where only the label's vector is masked. A last partial vector is read
// whole where the rows after it allow, else copied, and its lanes past C taken as -inf
// (e_k = 0, never the maximum): nothing past the logits is read.
// Rows are spread over onnxruntime's intra-op pool in blocks (with the histograms: in at most
// kParts fixed parts, each with its own, added in order); the statistics are then summed in
// one pass over N, in row order, so that nothing depends on the thread count.

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <cmath>

#include "op.h"

namespace focal {
namespace {

using focal::api;

constexpr const char* kOpName = "FocalEvaluation";
constexpr const char* kRankingOpName = "FocalEvaluationRanking";
constexpr int64_t kBlockRows = 128;  // rows a task of the pool scores

struct Rows {
  const float* logits;
  const int64_t* labels;
  const float* alpha;
  float gamma;
  int64_t ignore_index;
  int64_t n;
  int64_t c;
  float* focal_loss;
  float* cross_entropy;
  float* p_true;
  int64_t* prediction;
  float* confidence;
  float* brier;  // per row, summed into brier_sum afterwards
  std::atomic<bool>* nonfinite;  // set by any block that meets a NaN or infinite logit
};

// The int32 vector with as many lanes as F, and its lane numbers 0, 1, ...
template <typename F>
struct Lanes;
template <>
struct Lanes<Floats4> {
  using Ints = Ints4;
  static constexpr Ints4 numbers{0, 1, 2, 3};
};
template <>
struct Lanes<Floats8> {
  using Ints = Ints8;
  static constexpr Ints8 numbers{0, 1, 2, 3, 4, 5, 6, 7};
};
template <typename F>
using IntsOf = typename Lanes<F>::Ints;

// Lanes gathered into one value by a tree: lane j with lane j ^ h, for h = half the lanes
// down to 1 (the shuffles are constants once the loop is unrolled).
template <typename F>
FOCAL_INLINE float sum(F v) {
#pragma GCC unroll 4
  for (int32_t h = kLanes<F> / 2; h >= 1; h /= 2) v += __builtin_shuffle(v, Lanes<F>::numbers ^ h);
  return v[0];
}
template <typename F>
FOCAL_INLINE float max(F v) {
#pragma GCC unroll 4
  for (int32_t h = kLanes<F> / 2; h >= 1; h /= 2) {
    const F w = __builtin_shuffle(v, Lanes<F>::numbers ^ h);
    v = w > v ? w : v;
  }
  return v[0];
}
template <typename I>
FOCAL_INLINE int32_t min(I v) {
  int32_t m = v[0];
  for (int32_t j = 1; j < static_cast<int32_t>(sizeof(I) / sizeof(int32_t)); ++j)
    m = v[j] < m ? v[j] : m;
  return m;
}

// Over one row: its maximum m, the first k with x_k = m, sum_k e_k, sum_{k != t} e_k and
// e_k^2 (the other classes, masked, never subtracted), and whether every logit is finite.
struct Sums {
  float max;
  int32_t top;
  float all;
  float others;
  float others_squared;
  bool finite;
};

// e_k = exp(x_k - m) of the vector at k, also written to kept[k..] with kKeep.
template <bool kKeep, typename F>
FOCAL_INLINE F exponentials(F x, F shift, int32_t k, float* __restrict kept) {
  const F e = exp_nonpositive(x - shift);
  if constexpr (kKeep) std::memcpy(kept + k, &e, sizeof e);
  return e;
}

// Row x[0..c) with label t, in vectors F, where x[0..readable) may be read (the rows after
// it too). With kKeep, the exponentials are also written to `kept` (for the ranking bins),
// whose length is c rounded up to whole vectors.
template <typename F, bool kKeep>
FOCAL_INLINE Sums row_sums(const float* __restrict x, int32_t c, int32_t t, int64_t readable,
                           float* __restrict kept) {
  using I = IntsOf<F>;
  constexpr int32_t width = kLanes<F>;
  const I lane = Lanes<F>::numbers;
  const int32_t full = c / width * width;  // whole vectors; then the partial one, `tail`
  const F none = F{} - INFINITY;
  F tail = none;
  if (full < c && full + width <= readable) {
    tail = lane + full < c ? load<F>(x + full) : none;
  } else if (full < c) {
    float copy[width];
    for (int32_t j = 0; j < width; ++j) copy[j] = full + j < c ? x[full + j] : -INFINITY;
    tail = load<F>(copy);
  }
  // pass 1: each lane's maximum and its first index; x - x is 0 unless x is NaN or infinite
  F highest = none, nonfinite = F{};
  I first = I{} + c, index = lane;
  for (int32_t k = 0; k < full; k += width, index += width) {
    const F v = load<F>(x + k);
    const I above = v > highest;
    highest = above ? v : highest;
    first = above ? index : first;
    nonfinite += v - v;
  }
  const I above = tail > highest;
  highest = above ? tail : highest;
  first = above ? index : first;
  nonfinite += index < c ? tail - tail : F{};
  const float m = max(highest);
  const F shift = F{} + m;
  // pass 2: the exponentials, all summed as the other classes' but for the label's vector
  F others = F{}, squared = F{};
  const int32_t labelled = t / width * width;  // the label's vector
  for (int32_t k = 0; k < c; k += width) {
    if (k == labelled) continue;
    const F e = exponentials<kKeep>(k < full ? load<F>(x + k) : tail, shift, k, kept);
    others += e;
    squared += e * e;
  }
  const F e =
      exponentials<kKeep>(labelled < full ? load<F>(x + labelled) : tail, shift, labelled, kept);
  const F other = lane + labelled == t ? F{} : e;
  others += other;
  squared += other * other;
  const float other_sum = sum(others);
  return {m,
          min(highest == shift ? first : I{} + c),
          other_sum + e[t - labelled],
          other_sum,
          sum(squared),
          sum(nonfinite) == 0.0f};
}

// One block's per-row sums (phase 1), turned into per-sample values all at once (phase 2).
struct Block {
  float s[kBlockRows], others[kBlockRows], others_squared[kBlockRows];
  float shifted_true[kBlockRows];  // x_t - m
  float alpha[kBlockRows], valid[kBlockRows];
};

// One part's ranking histogram [C, H] (FocalEvaluationRanking): every valid row's bin of
// each class's probability. Its label's own bin goes to `label_bins` (a row's), counted
// afterwards in one pass over N, so that a part holds one int32 table.
struct Histograms {
  int64_t score_bins;
  std::vector<int32_t> every;
  int32_t* label_bins;
};

// The bins floor(p_k H) (p = 1 in the last) of one row's probabilities p_k = e_k / s, as
// focal.ranking.score_bin takes them: of the exact product p H (float64 there). Here in
// float32: b = floor(fl(p H)), less one where the product was rounded up onto b, which the
// fused multiply-add p H - b (rounded once, so its sign is exact) tells.
FOCAL_INLINE void add_bins(const float* __restrict e, float s, int32_t c, int32_t label,
                           Histograms& h, int32_t* __restrict bins, int32_t* row_bin) {
  const float inverse = 1.0f / s;
  const float scale = static_cast<float>(h.score_bins);
  const int32_t last = static_cast<int32_t>(h.score_bins - 1);
#pragma omp simd
  for (int32_t k = 0; k < c; ++k) {
    const float p = e[k] * inverse;
    const float rounded = std::floor(p * scale);
    const int32_t bin = static_cast<int32_t>(rounded) - (std::fma(p, scale, -rounded) < 0.0f);
    bins[k] = bin < last ? bin : last;
  }
  int32_t* every = h.every.data();
  for (int32_t k = 0; k < c; ++k) every[k * h.score_bins + bins[k]] += 1;
  *row_bin = bins[label];
}

// row_sums with the exponentials kept when there are `histograms` to bin them.
template <typename F>
FOCAL_INLINE Sums row_sums(const float* x, int32_t c, int32_t t, int64_t readable,
                           const Histograms* histograms, float* kept) {
  return histograms ? row_sums<F, true>(x, c, t, readable, kept)
                    : row_sums<F, false>(x, c, t, readable, nullptr);
}

// Rows [begin, end) in vectors F: per-sample values (and, with `histograms`, their ranking
// bins). Inlined into each copy of score_rows; lambdas stay out of it, as each would be a
// function of its own, compiled for the baseline processor whatever copy calls it.
template <typename F>
FOCAL_INLINE void score_rows_in(const Rows& rows, int64_t begin, int64_t end,
                                Histograms* histograms) {
  const int32_t classes = static_cast<int32_t>(rows.c);
  const size_t whole = static_cast<size_t>((rows.c + kLanes<F> - 1) / kLanes<F> * kLanes<F>);
  const std::vector<float> zeros(whole, 0.0f);  // a row with a non-finite logit
  std::vector<float> kept(histograms ? whole : 0);
  std::vector<int32_t> bins(histograms ? whole : 0);
  Block block;
  const int64_t count = end - begin;
  for (int64_t j = 0; j < count; ++j) {  // phase 1: one row at a time, over its classes
    const int64_t i = begin + j;
    const int64_t label = rows.labels[i];
    const bool valid = label != rows.ignore_index;
    const int32_t t = valid ? static_cast<int32_t>(label) : 0;
    const float* x = rows.logits + i * rows.c;
    Sums sums = row_sums<F>(x, classes, t, (rows.n - i) * rows.c, histograms, kept.data());
    if (!sums.finite) {  // the run fails; the row is scored as zeros meanwhile (no bin NaN)
      rows.nonfinite->store(true, std::memory_order_relaxed);
      x = zeros.data();
      sums = row_sums<F>(x, classes, t, static_cast<int64_t>(whole), histograms, kept.data());
    }
    if (histograms && valid)
      add_bins(kept.data(), sums.all, classes, t, *histograms, bins.data(),
               histograms->label_bins + i);
    rows.prediction[i] = sums.top;
    block.s[j] = sums.all;
    block.others[j] = sums.others;
    block.others_squared[j] = sums.others_squared;
    block.shifted_true[j] = x[t] - sums.max;
    block.alpha[j] = rows.alpha[t];
    block.valid[j] = valid ? 1.0f : 0.0f;
  }
  const float gamma = rows.gamma;
  float* __restrict confidence = rows.confidence + begin;
  float* __restrict cross_entropy = rows.cross_entropy + begin;
  float* __restrict focal_loss = rows.focal_loss + begin;
  float* __restrict p_true = rows.p_true + begin;
  float* __restrict brier = rows.brier + begin;
#pragma omp simd
  for (int64_t j = 0; j < count; ++j) {  // phase 2: over the block's rows at once
    const float s = block.s[j];
    const float valid = block.valid[j];
    const float ce = log_positive(s) - block.shifted_true[j];
    const float rest = block.others[j] / s;
    const float floored = rest > FLT_MIN ? rest : FLT_MIN;
    const float modulating = exp_nonpositive(gamma * log_positive(floored));
    confidence[j] = 1.0f / s;
    cross_entropy[j] = valid * ce;
    focal_loss[j] = valid * (block.alpha[j] * (modulating * ce));
    p_true[j] = valid * (exp_nonpositive(block.shifted_true[j]) / s);
    brier[j] = valid * (block.others_squared[j] / (s * s) + rest * rest);
  }
}

// One copy per processor level on x86-64 (chosen at load time, as FOCAL_CPU_DISPATCH does, but
// with the vector width of each), else one with 4 lanes.
#ifdef FOCAL_COPIES_BY_CPU
__attribute__((target("default"))) void score_rows(const Rows& rows, int64_t begin, int64_t end,
                                                   Histograms* histograms) {
  score_rows_in<Floats4>(rows, begin, end, histograms);
}
__attribute__((target("arch=x86-64-v3"))) void score_rows(const Rows& rows, int64_t begin,
                                                          int64_t end, Histograms* histograms) {
  score_rows_in<Floats8>(rows, begin, end, histograms);
}
__attribute__((target("arch=x86-64-v4"))) void score_rows(const Rows& rows, int64_t begin,
                                                          int64_t end, Histograms* histograms) {
  score_rows_in<Floats8>(rows, begin, end, histograms);
}
#else
void score_rows(const Rows& rows, int64_t begin, int64_t end, Histograms* histograms) {
  score_rows_in<Floats4>(rows, begin, end, histograms);
}
#endif

struct Statistics {
  int64_t* confusion_matrix;
  double* focal_loss_sum;
  double* cross_entropy_sum;
  double* alpha_sum;
  double* brier_sum;
  int64_t* bin_count;
  double* bin_confidence_sum;
  int64_t* bin_correct;
};

// Bin b holds confidences in (b / B, (b + 1) / B], as focal.statistics.calibration_bin.
void add_statistics(const Rows& rows, int64_t num_bins, const Statistics& out) {
  const float bins = static_cast<float>(num_bins);
  for (int64_t i = 0; i < rows.n; ++i) {
    const int64_t label = rows.labels[i];
    if (label == rows.ignore_index) continue;
    const int64_t top = rows.prediction[i];
    out.confusion_matrix[label * rows.c + top] += 1;
    out.focal_loss_sum[label] += rows.focal_loss[i];
    out.cross_entropy_sum[label] += rows.cross_entropy[i];
    out.alpha_sum[label] += rows.alpha[label];
    out.brier_sum[label] += rows.brier[i];
    const float scaled = std::ceil(rows.confidence[i] * bins) - 1.0f;
    const int64_t bin = static_cast<int64_t>(std::min(std::max(scaled, 0.0f), bins - 1.0f));
    out.bin_count[bin] += 1;
    out.bin_confidence_sum[bin] += rows.confidence[i];
    out.bin_correct[bin] += top == label;
  }
}

struct Kernel {
  int64_t num_bins;
  int64_t score_bins;  // 0: FocalEvaluation; else FocalEvaluationRanking's H
};

constexpr int64_t kParts = 8;       // FocalEvaluationRanking: fixed parts of the rows,
constexpr int64_t kPartRows = 512;  // each with its histogram (fewer for small batches)

struct Ranked {
  const Rows* rows;
  std::vector<Histograms>* parts;
  int64_t part_rows;
};

OrtStatus* error(const std::string& message) { return focal::error(kOpName, message); }

// FocalEvaluationRanking: the rows in fixed parts, each with its histogram, added in order;
// then each valid row's label bin, positives, whose difference from all is the negatives.
OrtStatus* rank(const Kernel& kernel, OrtKernelContext* context, const Rows& rows) {
  const int64_t bins = kernel.score_bins;
  const std::vector<int64_t> shape{rows.c, bins};
  int64_t *positive = nullptr, *negative = nullptr;
  FOCAL_TRY(output(context, 13, shape, &positive));
  FOCAL_TRY(output(context, 14, shape, &negative));
  if (rows.n == 0) return nullptr;
  const size_t cells = static_cast<size_t>(rows.c * bins);
  std::vector<int32_t> label_bins(static_cast<size_t>(rows.n));
  const int64_t count = std::clamp<int64_t>(rows.n / kPartRows, 1, kParts);
  std::vector<Histograms> parts(
      static_cast<size_t>(count), Histograms{bins, std::vector<int32_t>(cells), label_bins.data()});
  Ranked ranked{&rows, &parts, (rows.n + count - 1) / count};
  auto part = [](void* data, size_t index) {
    const Ranked& r = *static_cast<const Ranked*>(data);
    const int64_t first = static_cast<int64_t>(index) * r.part_rows;
    const int64_t last = std::min(first + r.part_rows, r.rows->n);
    for (int64_t begin = first; begin < last; begin += kBlockRows)
      score_rows(*r.rows, begin, std::min(begin + kBlockRows, last), &(*r.parts)[index]);
  };
  FOCAL_TRY(api->KernelContext_ParallelFor(context, part, static_cast<size_t>(count), 0,
                                           &ranked));
  for (const Histograms& h : parts)
    for (size_t cell = 0; cell < cells; ++cell) negative[cell] += h.every[cell];
  for (int64_t i = 0; i < rows.n; ++i) {
    const int64_t label = rows.labels[i];
    if (label != rows.ignore_index) positive[label * bins + label_bins[i]] += 1;
  }
  for (size_t cell = 0; cell < cells; ++cell) negative[cell] -= positive[cell];
  return nullptr;
}

OrtStatus* compute(const Kernel& kernel, OrtKernelContext* context) {
  Rows rows{};
  std::vector<int64_t> logits_shape, labels_shape, alpha_shape, scalar_shape;
  const float* gamma = nullptr;
  const int64_t* ignore_index = nullptr;
  FOCAL_TRY(input(context, 0, &rows.logits, &logits_shape));
  FOCAL_TRY(input(context, 1, &rows.labels, &labels_shape));
  FOCAL_TRY(input(context, 2, &rows.alpha, &alpha_shape));
  FOCAL_TRY(input(context, 3, &gamma, &scalar_shape));
  FOCAL_TRY(input(context, 4, &ignore_index, &scalar_shape));
  if (logits_shape.size() != 2 || logits_shape[1] < 1)
    return error("logits must have shape [N, C] with C >= 1");
  rows.n = logits_shape[0];
  rows.c = logits_shape[1];
  if (labels_shape != std::vector<int64_t>{rows.n}) return error("labels must have shape [N]");
  if (alpha_shape != std::vector<int64_t>{rows.c}) return error("alpha must have shape [C]");
  rows.gamma = *gamma;
  rows.ignore_index = *ignore_index;
  for (int64_t i = 0; i < rows.n; ++i) {
    const int64_t label = rows.labels[i];
    if (label != rows.ignore_index && (label < 0 || label >= rows.c))
      return error("labels must be in [0, C) or equal to ignore_index; row " +
                   std::to_string(i) + " has " + std::to_string(label));
  }
  const std::vector<int64_t> per_row{rows.n}, per_class{rows.c}, per_bin{kernel.num_bins};
  Statistics out{};
  FOCAL_TRY(output(context, 0, per_row, &rows.focal_loss));
  FOCAL_TRY(output(context, 1, per_row, &rows.cross_entropy));
  FOCAL_TRY(output(context, 2, per_row, &rows.p_true));
  FOCAL_TRY(output(context, 3, per_row, &rows.prediction));
  FOCAL_TRY(output(context, 4, per_row, &rows.confidence));
  FOCAL_TRY(output(context, 5, {rows.c, rows.c}, &out.confusion_matrix));
  FOCAL_TRY(output(context, 6, per_class, &out.focal_loss_sum));
  FOCAL_TRY(output(context, 7, per_class, &out.cross_entropy_sum));
  FOCAL_TRY(output(context, 8, per_class, &out.alpha_sum));
  FOCAL_TRY(output(context, 9, per_class, &out.brier_sum));
  FOCAL_TRY(output(context, 10, per_bin, &out.bin_count));
  FOCAL_TRY(output(context, 11, per_bin, &out.bin_confidence_sum));
  FOCAL_TRY(output(context, 12, per_bin, &out.bin_correct));
  std::vector<float> brier(static_cast<size_t>(rows.n));
  rows.brier = brier.data();
  std::atomic<bool> nonfinite{false};
  rows.nonfinite = &nonfinite;
  if (rows.n > 0 && kernel.score_bins == 0) {
    const int64_t blocks = (rows.n + kBlockRows - 1) / kBlockRows;
    auto block = [](void* data, size_t index) {
      const Rows& r = *static_cast<const Rows*>(data);
      const int64_t begin = static_cast<int64_t>(index) * kBlockRows;
      score_rows(r, begin, std::min(begin + kBlockRows, r.n), nullptr);
    };
    FOCAL_TRY(api->KernelContext_ParallelFor(context, block, static_cast<size_t>(blocks), 0,
                                             &rows));
  }
  if (kernel.score_bins > 0) FOCAL_TRY(rank(kernel, context, rows));
  if (nonfinite.load()) return error(kNonFinite);
  add_statistics(rows, kernel.num_bins, out);
  return nullptr;
}

OrtStatus* create(const OrtKernelInfo* info, void** kernel) {
  int64_t num_bins = 0;
  FOCAL_TRY(count_attribute(info, kOpName, "num_bins", &num_bins));
  *kernel = new Kernel{num_bins, 0};
  return nullptr;
}

OrtStatus* create_ranking(const OrtKernelInfo* info, void** kernel) {
  int64_t num_bins = 0, score_bins = 0;
  FOCAL_TRY(count_attribute(info, kRankingOpName, "num_bins", &num_bins));
  FOCAL_TRY(count_attribute(info, kRankingOpName, "score_bins", &score_bins));
  *kernel = new Kernel{num_bins, score_bins};
  return nullptr;
}

OrtStatus* ORT_API_CALL run(void* kernel, OrtKernelContext* context) {
  return compute(*static_cast<Kernel*>(kernel), context);
}

void ORT_API_CALL destroy(void* kernel) { delete static_cast<Kernel*>(kernel); }

const std::vector<ONNXTensorElementDataType> kInputs{kFloat, kInt64, kFloat, kFloat, kInt64};
const std::vector<ONNXTensorElementDataType> kOutputs{
    kFloat, kFloat, kFloat,  kInt64, kFloat,  kInt64, kDouble,
    kDouble, kDouble, kDouble, kInt64, kDouble, kInt64};

const OpSpec spec{kOpName, kInputs, kOutputs, create, run, destroy};

std::vector<ONNXTensorElementDataType> with_histograms() {
  std::vector<ONNXTensorElementDataType> types = kOutputs;
  types.insert(types.end(), {kInt64, kInt64});
  return types;
}

const OpSpec ranking_spec{
    kRankingOpName, kInputs, with_histograms(), create_ranking, run, destroy};

}  // namespace

Op multiclass_evaluation = make_op(&spec);
Op multiclass_evaluation_ranking = make_op(&ranking_spec);

}  // namespace focal
