"""The data behind each figure equals numpy and scikit-learn on the batch the result scored.

Each result is a real /score, /summary or focal evaluate document; each reference is computed
from its logits and labels (tests.report.reference), never from the statistics.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from focal_eval.report import figures
from focal_eval.report.inputs import Result, load
from tests.report import reference
from tests.report._inputs import REGIONS, Scored

RTOL = 1e-5  # float32 sums in the graph against float64 here


def whole(scored: Scored) -> Result:
    return load(scored.path).sections[0].whole


def test_reliability_bins_are_the_confidence_and_accuracy_of_their_samples(
    multiclass: Scored,
) -> None:
    p = reference.softmax(multiclass.logits)
    correct = p.argmax(axis=1) == multiclass.labels
    count, confidence, accuracy = reference.calibration(p.max(axis=1), correct)
    bins = figures.reliability(whole(multiclass))
    np.testing.assert_array_equal(bins.count, count)
    np.testing.assert_allclose(bins.confidence, confidence, rtol=RTOL)
    np.testing.assert_allclose(bins.accuracy, accuracy, rtol=RTOL)
    np.testing.assert_allclose(bins.edges, np.linspace(0, 1, 16))


def test_gaps_weighted_by_counts_are_the_reported_calibration_error(multiclass: Scored) -> None:
    bins = figures.reliability(whole(multiclass))
    filled = bins.count > 0
    gaps = np.abs(bins.confidence - bins.accuracy)[filled] * bins.count[filled]
    ece = multiclass.document["metrics"]["expected_calibration_error"]
    assert gaps.sum() / bins.count.sum() == pytest.approx(ece, rel=1e-9)


@pytest.mark.parametrize("fixture", ["multilabel_scored", "binary"])
def test_multilabel_reliability_bins_are_mean_p_and_fraction_positive(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    scored: Scored = request.getfixturevalue(fixture)
    p = reference.sigmoid(scored.logits).reshape(-1)
    count, mean_p, positive = reference.calibration(p, scored.labels.reshape(-1) == 1)
    bins = figures.reliability(whole(scored))
    np.testing.assert_array_equal(bins.count, count)
    np.testing.assert_allclose(bins.confidence, mean_p, rtol=RTOL)
    np.testing.assert_allclose(bins.accuracy, positive, rtol=RTOL)


def test_row_normalised_matrix_is_sklearns_normalize_true(multiclass: Scored) -> None:
    predicted = multiclass.logits.argmax(axis=1)
    expected = skm.confusion_matrix(multiclass.labels, predicted, normalize="true")
    confusion = whole(multiclass).statistics["confusion_matrix"]
    np.testing.assert_allclose(figures.row_normalised(confusion), expected, rtol=1e-12)


def test_a_class_without_samples_has_a_row_of_zeros() -> None:
    np.testing.assert_array_equal(
        figures.row_normalised(np.array([[0, 0], [1, 3]])), [[0.0, 0.0], [0.25, 0.75]]
    )


def test_top_confusions_are_the_largest_off_diagonal_cells(wide: Scored) -> None:
    matrix = skm.confusion_matrix(wide.labels, wide.logits.argmax(axis=1), labels=range(40))
    cells = [(-matrix[i, j], i, j) for i in range(40) for j in range(40) if i != j and matrix[i, j]]
    expected = sorted(cells)[:20]
    top = figures.top_confusions(whole(wide).statistics["confusion_matrix"], 20)
    assert list(zip(top.true, top.predicted, strict=True)) == [(i, j) for _, i, j in expected]
    np.testing.assert_array_equal(top.count, [-count for count, _, _ in expected])
    supports = matrix.sum(axis=1)
    np.testing.assert_allclose(top.rate, [-c / supports[i] for c, i, _ in expected])


def test_per_class_values_are_sklearns_sorted_by_support(multiclass: Scored) -> None:
    labels, predicted = multiclass.labels, multiclass.logits.argmax(axis=1)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        labels, predicted, labels=range(6), zero_division=0
    )
    focal, cross_entropy = reference.softmax_losses(multiclass.logits, labels)
    order = sorted(range(6), key=lambda k: (-support[k], k))
    values = figures.per_class(whole(multiclass))
    np.testing.assert_array_equal(values.order, order)
    np.testing.assert_array_equal(values.support, support[order])
    for got, want in [
        (values.precision, precision),
        (values.recall, recall),
        (values.f1, f1),
        (values.focal_loss, np.bincount(labels, focal) / support),
        (values.cross_entropy, np.bincount(labels, cross_entropy) / support),
    ]:
        np.testing.assert_allclose(got, want[order], rtol=RTOL)


def test_per_label_values_are_sklearns_and_losses_per_decision(multilabel_scored: Scored) -> None:
    logits, targets = multilabel_scored.logits, multilabel_scored.labels
    predicted = (reference.sigmoid(logits) >= 0.5).astype(int)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        targets, predicted, zero_division=0
    )
    focal, cross_entropy = reference.sigmoid_losses(logits, targets)
    order = sorted(range(5), key=lambda k: (-support[k], k))
    values = figures.per_class(whole(multilabel_scored))
    np.testing.assert_array_equal(values.order, order)
    np.testing.assert_array_equal(values.support, support[order])
    for got, want in [
        (values.precision, precision),
        (values.recall, recall),
        (values.f1, f1),
        (values.focal_loss, focal.mean(axis=0)),
        (values.cross_entropy, cross_entropy.mean(axis=0)),
    ]:
        np.testing.assert_allclose(got, want[order], rtol=RTOL)


def test_curves_are_sklearns_on_scores_rounded_to_their_bins(multilabel_scored: Scored) -> None:
    result = whole(multilabel_scored)
    p = reference.sigmoid(multilabel_scored.logits)
    for k in range(5):
        y, scores = multilabel_scored.labels[:, k], reference.rounded(p[:, k])
        got = figures.curve(
            result.statistics["positive_histogram"][k], result.statistics["negative_histogram"][k]
        )
        fpr, tpr, _ = skm.roc_curve(y, scores, drop_intermediate=False)
        np.testing.assert_allclose(got.false_positive_rate, fpr, rtol=1e-12)
        np.testing.assert_allclose(got.true_positive_rate, tpr, rtol=1e-12)
        precision, recall, _ = skm.precision_recall_curve(y, scores)
        np.testing.assert_allclose(got.precision, precision[::-1], rtol=1e-12)
        np.testing.assert_allclose(got.recall, recall[::-1], rtol=1e-12)


@pytest.mark.parametrize("fixture", ["multiclass", "multilabel_scored", "binary"])
def test_curve_areas_are_the_reported_auroc_and_average_precision(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    scored: Scored = request.getfixturevalue(fixture)
    result = whole(scored)
    positive, negative = (
        result.statistics[f"{kind}_histogram"] for kind in ("positive", "negative")
    )
    reported = scored.document.get("per_class", scored.document.get("per_label"))
    if reported is None:  # binary: the one label's values are scalars
        reported = {
            name: [scored.document["metrics"][name]] for name in ("auroc", "average_precision")
        }
    for k in range(len(positive)):
        c = figures.curve(positive[k], negative[k])
        area = np.trapezoid(c.true_positive_rate, c.false_positive_rate)
        assert area == pytest.approx(reported["auroc"][k], rel=1e-9)
        steps = np.sum(np.diff(c.recall) * c.precision[1:])
        assert steps == pytest.approx(reported["average_precision"][k], rel=1e-9)
    pooled = figures.curve(positive.sum(0), negative.sum(0))
    if "micro_auroc" in scored.document["metrics"]:
        area = np.trapezoid(pooled.true_positive_rate, pooled.false_positive_rate)
        assert area == pytest.approx(scored.document["metrics"]["micro_auroc"], rel=1e-9)


def test_slice_differences_are_sklearns_per_region(evaluated: tuple[Scored, np.ndarray]) -> None:
    scored, region = evaluated
    section = load(scored.path).sections[0]
    labels, predicted = scored.labels, scored.logits.argmax(axis=1)
    overall = skm.accuracy_score(labels, predicted), skm.balanced_accuracy_score(labels, predicted)
    assert [part.label for part in section.parts] == [f"region = {value}" for value in REGIONS]
    for part, value in zip(section.parts, REGIONS, strict=True):
        rows = region == value
        accuracy = skm.accuracy_score(labels[rows], predicted[rows])
        balanced = skm.balanced_accuracy_score(labels[rows], predicted[rows])
        got = figures.differences(section.whole, part, ("accuracy", "balanced_accuracy"))
        np.testing.assert_allclose(got, [accuracy - overall[0], balanced - overall[1]], atol=1e-12)
        assert part.samples == rows.sum()


def test_summary_sections_are_each_sources_lifetime_with_its_window(summary: Scored) -> None:
    document = load(summary.path)
    assert [s.title for s in document.sections] == ["Source canary", "Source default"]
    default = document.sections[1]
    assert default.whole.label == "lifetime"
    assert [part.label for part in default.parts] == ["window"]
    for result, rows in [(default.whole, slice(0, 600)), (default.parts[0], slice(400, 600))]:
        labels, predicted = summary.labels[rows], summary.logits[rows].argmax(axis=1)
        expected = skm.confusion_matrix(labels, predicted, labels=range(6), normalize="true")
        assert result.samples == len(labels)
        confusion = result.statistics["confusion_matrix"]
        np.testing.assert_allclose(figures.row_normalised(confusion), expected, rtol=1e-12)
    assert document.sections[0].whole.task == "multilabel"
