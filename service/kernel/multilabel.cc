// The multi-label (and binary) evaluation step as one custom op: a single pass over the rows.
//
// Op ai.focal_eval::FocalMultilabelEvaluation (version 1), attributes num_bins (B) and
// score_bins (H).
//   inputs   logits float [N, L], targets int64 [N, L], alpha float [], gamma float [],
//            threshold float [], ignore_index int64 []
//   outputs  focal_loss, binary_cross_entropy float [N], label_errors int64 [N],
//            true_positive, false_positive, false_negative, true_negative int64 [L],
//            focal_loss_sum, binary_cross_entropy_sum, brier_sum float64 [L], bin_count
//            int64 [B], bin_probability_sum float64 [B], bin_positive int64 [B], samples,
//            exact_matches int64 [], sample_f1_sum float64 [], positive_histogram,
//            negative_histogram int64 [L, H]
// The multi-label evaluation graph's per-sample values and statistics (focal/multilabel.py),
// in its order; the metrics are the metrics graph's, once per request.
//
// Per element, with t in {0, 1}, s = (2t - 1) x and e = exp(-|s|):
//   BCE = softplus(-s) = max(-s, 0) + log(1 + e)      softplus(s) = max(s, 0) + log(1 + e)
//   FL = alpha_t exp(-gamma softplus(s)) BCE           alpha_t = alpha t + (1 - alpha)(1 - t)
//   p = sigmoid(x) = 1 / (1 + e) for x >= 0, e / (1 + e) below; positive when p >= threshold
// and the statistics of focal/multilabel.py: counts at the threshold, sums, calibration bins
// (b / B, (b + 1) / B] over p, score bins floor(p H) (p = 1 in the last), per-sample F1.
// A logit that is NaN or infinite fails the run (kNonFinite), found as each row is read.
// Rows are split into at most kParts fixed parts (by N alone), each with its own sums, spread
// over onnxruntime's intra-op pool and added in order: the same result for any thread count.

#include <algorithm>
#include <cmath>

#include "op.h"

namespace focal {
namespace {

constexpr const char* kOpName = "FocalMultilabelEvaluation";
constexpr int64_t kParts = 8;
constexpr int64_t kPartRows = 1024;  // fewer parts for smaller batches
// A row is scored in whole vectors of this many floats (AVX-512's 16): copied into a padded
// buffer whose tail is ignored targets, so that no element takes the slow scalar remainder.
constexpr int64_t kLanes = 16;

int64_t padded(int64_t labels) { return (labels + kLanes - 1) / kLanes * kLanes; }

struct Kernel {
  int64_t num_bins;
  int64_t score_bins;
};

OrtStatus* error(const std::string& message) { return focal::error(kOpName, message); }

struct Batch {
  const float* logits;
  const int64_t* targets;
  float alpha;
  float gamma;
  float threshold;
  int64_t ignore_index;
  int64_t n;
  int64_t l;
  int64_t num_bins;
  int64_t score_bins;
  float* focal_loss;
  float* binary_cross_entropy;
  int64_t* label_errors;
};

// One part's sums (every statistic), added into the outputs in part order.
struct Sums {
  std::vector<int64_t> true_positive, false_positive, false_negative, true_negative;
  std::vector<double> focal_loss, binary_cross_entropy, brier;
  std::vector<int64_t> bin_count, bin_positive;
  std::vector<double> bin_probability;
  std::vector<int64_t> positive_histogram, negative_histogram;
  int64_t samples = 0, exact_matches = 0;
  double sample_f1 = 0.0;
  bool bad_target = false;
  bool nonfinite = false;  // a NaN or infinite logit

  // per-label sums over padded(L) labels: the padding's stay 0
  Sums(int64_t labels, int64_t bins, int64_t score_bins)
      : true_positive(padded(labels)), false_positive(padded(labels)),
        false_negative(padded(labels)), true_negative(padded(labels)),
        focal_loss(padded(labels)), binary_cross_entropy(padded(labels)),
        brier(padded(labels)), bin_count(bins), bin_positive(bins), bin_probability(bins),
        positive_histogram(labels * score_bins), negative_histogram(labels * score_bins) {}
};

// One row padded to whole vectors, and its per-element values.
struct Row {
  std::vector<float> logits;
  std::vector<int64_t> targets;
  std::vector<int32_t> code;  // 1 positive, 0 negative, -1 ignored, 2 neither (an error)
  std::vector<float> focal, cross_entropy, brier, probability;
  std::vector<int32_t> predicted;
  Row(int64_t labels, int64_t ignore_index)
      : logits(padded(labels), 0.0f), targets(padded(labels), ignore_index),
        code(padded(labels)), focal(padded(labels)), cross_entropy(padded(labels)),
        brier(padded(labels)), probability(padded(labels)), predicted(padded(labels)) {}
};

// Per element: the losses, p, the decision (loops simple enough for the vectorizer).
FOCAL_CPU_DISPATCH void score_elements(const Batch& b, int64_t labels, Row& row) {
  const float* __restrict x = row.logits.data();
  const int64_t* __restrict t = row.targets.data();
  int32_t* __restrict code = row.code.data();
  float* __restrict focal = row.focal.data();
  float* __restrict cross_entropy = row.cross_entropy.data();
  float* __restrict brier = row.brier.data();
  float* __restrict probability = row.probability.data();
  int32_t* __restrict predicted = row.predicted.data();
  const int64_t ignore_index = b.ignore_index;
#pragma omp simd
  for (int64_t k = 0; k < labels; ++k) {
    const int64_t value = t[k];
    code[k] = value == ignore_index ? -1 : value == 0 ? 0 : value == 1 ? 1 : 2;
  }
  const bool weighted = b.alpha >= 0.0f;
  const float alpha_positive = weighted ? b.alpha : 1.0f;
  const float alpha_negative = weighted ? 1.0f - b.alpha : 1.0f;
  const float gamma = b.gamma, threshold = b.threshold;
#pragma omp simd
  for (int64_t k = 0; k < labels; ++k) {
    const float valid = code[k] >= 0 ? 1.0f : 0.0f;
    const float positive = code[k] == 1 ? 1.0f : 0.0f;
    const float signed_x = code[k] == 1 ? x[k] : -x[k];
    const float e = exp_nonpositive(-std::fabs(signed_x));
    const float log1p_e = log1p_unit(e);
    const float bce = std::max(-signed_x, 0.0f) + log1p_e;
    const float softplus = std::max(signed_x, 0.0f) + log1p_e;
    const float modulating = exp_nonpositive(-gamma * softplus);
    const float weight = alpha_negative + positive * (alpha_positive - alpha_negative);
    const float p = (x[k] >= 0.0f ? 1.0f : e) / (1.0f + e);
    const float miss = p - positive;
    focal[k] = valid * (weight * modulating * bce);
    cross_entropy[k] = valid * bce;
    brier[k] = valid * (miss * miss);
    probability[k] = p;
    predicted[k] = p >= threshold ? 1 : 0;
  }
}

// The row's sums into the part's, and its per-sample values.
FOCAL_CPU_DISPATCH void add_row(const Batch& b, int64_t i, int64_t labels, const Row& row,
                                Sums& sums) {
  const int32_t* __restrict code = row.code.data();
  const int32_t* __restrict predicted = row.predicted.data();
  const float* __restrict focal = row.focal.data();
  const float* __restrict cross_entropy = row.cross_entropy.data();
  const float* __restrict brier = row.brier.data();
  double* __restrict focal_sum = sums.focal_loss.data();
  double* __restrict cross_entropy_sum = sums.binary_cross_entropy.data();
  double* __restrict brier_sum = sums.brier.data();
  int64_t* __restrict tp = sums.true_positive.data();
  int64_t* __restrict fp = sums.false_positive.data();
  int64_t* __restrict fn = sums.false_negative.data();
  int64_t* __restrict tn = sums.true_negative.data();
  float focal_row = 0.0f, cross_entropy_row = 0.0f;
#pragma omp simd reduction(+ : focal_row, cross_entropy_row)
  for (int64_t k = 0; k < labels; ++k) {
    focal_row += focal[k];
    cross_entropy_row += cross_entropy[k];
    focal_sum[k] += focal[k];
    cross_entropy_sum[k] += cross_entropy[k];
    brier_sum[k] += brier[k];
  }
  int32_t errors = 0, hits = 0, valid_count = 0, bad = 0;
#pragma omp simd reduction(+ : errors, hits, valid_count, bad)
  for (int64_t k = 0; k < labels; ++k) {
    const int32_t positive = code[k] == 1;
    const int32_t negative = code[k] == 0;
    const int32_t decision = predicted[k];
    tp[k] += positive & decision;
    fn[k] += positive & (1 - decision);
    fp[k] += negative & decision;
    tn[k] += negative & (1 - decision);
    hits += positive & decision;
    errors += (positive & (1 - decision)) | (negative & decision);
    valid_count += positive | negative;
    bad += code[k] == 2;
  }
  sums.bad_target = sums.bad_target || bad > 0;
  b.focal_loss[i] = focal_row;
  b.binary_cross_entropy[i] = cross_entropy_row;
  b.label_errors[i] = errors;
  if (valid_count > 0) {
    const double denominator = 2.0 * hits + errors;
    sums.samples += 1;
    sums.exact_matches += errors == 0;
    sums.sample_f1 += denominator > 0 ? 2.0 * hits / denominator : 0.0;
  }
}

// The bins of one row: calibration bins over p, and each label's score histograms.
void bin_row(const Batch& b, const Row& row, Sums& sums) {
  const float bins = static_cast<float>(b.num_bins);
  const double score_bins = static_cast<double>(b.score_bins);
  for (int64_t k = 0; k < b.l; ++k) {
    const int32_t target = row.code[k];
    if (target < 0 || target > 1) continue;
    const float p = row.probability[k];
    const float scaled = std::ceil(p * bins) - 1.0f;
    const int64_t bin = static_cast<int64_t>(std::min(std::max(scaled, 0.0f), bins - 1.0f));
    sums.bin_count[bin] += 1;
    sums.bin_positive[bin] += target;
    sums.bin_probability[bin] += p;
    const int64_t score = std::min(static_cast<int64_t>(p * score_bins), b.score_bins - 1);
    auto& histogram = target ? sums.positive_histogram : sums.negative_histogram;
    histogram[k * b.score_bins + score] += 1;
  }
}

struct Work {
  const Batch* batch;
  std::vector<Sums>* parts;
  int64_t part_rows;
};

void score_part(void* data, size_t index) {
  const Work& work = *static_cast<const Work*>(data);
  const Batch& b = *work.batch;
  Sums& sums = (*work.parts)[index];
  Row row(b.l, b.ignore_index);
  const int64_t begin = static_cast<int64_t>(index) * work.part_rows;
  const int64_t end = std::min(begin + work.part_rows, b.n);
  const int64_t labels = padded(b.l);
  for (int64_t i = begin; i < end; ++i) {
    std::memcpy(row.logits.data(), b.logits + i * b.l, sizeof(float) * b.l);
    std::memcpy(row.targets.data(), b.targets + i * b.l, sizeof(int64_t) * b.l);
    if (!all_finite(row.logits.data(), b.l)) {  // the run fails; the row is scored as
      sums.nonfinite = true;                     // zeros meanwhile, so that no bin is NaN
      std::fill(row.logits.begin(), row.logits.begin() + b.l, 0.0f);
    }
    score_elements(b, labels, row);
    add_row(b, i, labels, row, sums);
    bin_row(b, row, sums);
  }
}

// The first `count` of `values` (per-label sums carry padding) added into `out`.
template <typename T>
void add(T* out, const std::vector<T>& values, int64_t count) {
  for (int64_t k = 0; k < count; ++k) out[k] += values[k];
}

OrtStatus* compute(const Kernel& kernel, OrtKernelContext* context) {
  Batch b{};
  std::vector<int64_t> logits_shape, targets_shape, scalar_shape;
  const float *alpha = nullptr, *gamma = nullptr, *threshold = nullptr;
  const int64_t* ignore_index = nullptr;
  FOCAL_TRY(input(context, 0, &b.logits, &logits_shape));
  FOCAL_TRY(input(context, 1, &b.targets, &targets_shape));
  FOCAL_TRY(input(context, 2, &alpha, &scalar_shape));
  FOCAL_TRY(input(context, 3, &gamma, &scalar_shape));
  FOCAL_TRY(input(context, 4, &threshold, &scalar_shape));
  FOCAL_TRY(input(context, 5, &ignore_index, &scalar_shape));
  if (logits_shape.size() != 2 || logits_shape[1] < 1)
    return error("logits must have shape [N, L] with L >= 1");
  if (targets_shape != logits_shape) return error("targets must have the shape of logits");
  b.n = logits_shape[0];
  b.l = logits_shape[1];
  b.alpha = *alpha;
  b.gamma = *gamma;
  b.threshold = *threshold;
  b.ignore_index = *ignore_index;
  b.num_bins = kernel.num_bins;
  b.score_bins = kernel.score_bins;
  const std::vector<int64_t> per_row{b.n}, per_label{b.l}, per_bin{b.num_bins}, scalar{},
      histogram{b.l, b.score_bins};
  FOCAL_TRY(output(context, 0, per_row, &b.focal_loss));
  FOCAL_TRY(output(context, 1, per_row, &b.binary_cross_entropy));
  FOCAL_TRY(output(context, 2, per_row, &b.label_errors));
  int64_t *tp, *fp, *fn, *tn, *bin_count, *bin_positive, *samples, *exact, *positive, *negative;
  double *focal_sum, *cross_entropy_sum, *brier_sum, *bin_probability, *sample_f1;
  FOCAL_TRY(output(context, 3, per_label, &tp));
  FOCAL_TRY(output(context, 4, per_label, &fp));
  FOCAL_TRY(output(context, 5, per_label, &fn));
  FOCAL_TRY(output(context, 6, per_label, &tn));
  FOCAL_TRY(output(context, 7, per_label, &focal_sum));
  FOCAL_TRY(output(context, 8, per_label, &cross_entropy_sum));
  FOCAL_TRY(output(context, 9, per_label, &brier_sum));
  FOCAL_TRY(output(context, 10, per_bin, &bin_count));
  FOCAL_TRY(output(context, 11, per_bin, &bin_probability));
  FOCAL_TRY(output(context, 12, per_bin, &bin_positive));
  FOCAL_TRY(output(context, 13, scalar, &samples));
  FOCAL_TRY(output(context, 14, scalar, &exact));
  FOCAL_TRY(output(context, 15, scalar, &sample_f1));
  FOCAL_TRY(output(context, 16, histogram, &positive));
  FOCAL_TRY(output(context, 17, histogram, &negative));
  const int64_t count = std::clamp<int64_t>(b.n / kPartRows, 1, kParts);
  std::vector<Sums> parts(static_cast<size_t>(count), Sums(b.l, b.num_bins, b.score_bins));
  Work work{&b, &parts, (b.n + count - 1) / count};
  if (b.n > 0)
    FOCAL_TRY(api->KernelContext_ParallelFor(context, score_part, static_cast<size_t>(count),
                                             0, &work));
  for (const Sums& sums : parts) {
    if (sums.bad_target)
      return error("targets must be 0, 1 or equal to ignore_index (" +
                   std::to_string(b.ignore_index) + ")");
    if (sums.nonfinite) return error(kNonFinite);
    add(tp, sums.true_positive, b.l);
    add(fp, sums.false_positive, b.l);
    add(fn, sums.false_negative, b.l);
    add(tn, sums.true_negative, b.l);
    add(focal_sum, sums.focal_loss, b.l);
    add(cross_entropy_sum, sums.binary_cross_entropy, b.l);
    add(brier_sum, sums.brier, b.l);
    add(bin_count, sums.bin_count, b.num_bins);
    add(bin_probability, sums.bin_probability, b.num_bins);
    add(bin_positive, sums.bin_positive, b.num_bins);
    add(positive, sums.positive_histogram, b.l * b.score_bins);
    add(negative, sums.negative_histogram, b.l * b.score_bins);
    *samples += sums.samples;
    *exact += sums.exact_matches;
    *sample_f1 += sums.sample_f1;
  }
  return nullptr;
}

OrtStatus* create(const OrtKernelInfo* info, void** kernel) {
  int64_t num_bins = 0, score_bins = 0;
  FOCAL_TRY(count_attribute(info, kOpName, "num_bins", &num_bins));
  FOCAL_TRY(count_attribute(info, kOpName, "score_bins", &score_bins));
  *kernel = new Kernel{num_bins, score_bins};
  return nullptr;
}

OrtStatus* ORT_API_CALL run(void* kernel, OrtKernelContext* context) {
  return compute(*static_cast<Kernel*>(kernel), context);
}

void ORT_API_CALL destroy(void* kernel) { delete static_cast<Kernel*>(kernel); }

const OpSpec spec{
    kOpName,
    {kFloat, kInt64, kFloat, kFloat, kFloat, kInt64},
    {kFloat, kFloat, kInt64, kInt64, kInt64, kInt64, kInt64, kDouble, kDouble, kDouble, kInt64,
     kDouble, kInt64, kInt64, kInt64, kDouble, kInt64, kInt64},
    create,
    run,
    destroy,
};

}  // namespace

Op multilabel_evaluation = make_op(&spec);

}  // namespace focal
