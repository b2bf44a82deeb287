"""Arrow columns as numpy: every list kind, sliced anywhere (record batches are slices)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from focal_eval.evaluate.sources import Columns, InputError, arrow_block

LOGITS = np.arange(60, dtype=np.float32).reshape(12, 5) / 7
LABELS = np.arange(12, dtype=np.int64) % 5
KINDS = {
    "fixed_size_list": pa.FixedSizeListArray.from_arrays(pa.array(LOGITS.reshape(-1)), 5),
    "list": pa.array(LOGITS.tolist(), pa.list_(pa.float32())),
    "large_list": pa.array(LOGITS.tolist(), pa.large_list(pa.float32())),
}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize(("start", "rows"), [(0, 12), (3, 4), (7, 5), (11, 1)])
def test_a_sliced_batch_gives_its_own_rows(kind: str, start: int, rows: int) -> None:
    batch = pa.record_batch({"logits": KINDS[kind], "labels": pa.array(LABELS)})
    block = arrow_block(
        "f", start, batch.slice(start, rows), Columns("labels", "logits"), ["logits"]
    )
    np.testing.assert_array_equal(block.logits, LOGITS[start : start + rows])
    np.testing.assert_array_equal(block.labels, LABELS[start : start + rows])


def test_a_sliced_list_column_of_ragged_rows_names_the_row() -> None:
    ragged = pa.array([[1.0, 2.0], [3.0, 4.0], [5.0], [6.0, 7.0]], pa.list_(pa.float32()))
    batch = pa.record_batch({"logits": ragged, "labels": pa.array([0, 1, 0, 1])}).slice(1, 3)
    with pytest.raises(InputError) as caught:
        arrow_block("f", 1, batch, Columns("labels", "logits"), ["logits"])
    assert str(caught.value) == (
        "f, rows 1-3: logits has 1 values at row 1 of the block, 2 at its first: every row"
        " needs one per class or label"
    )
