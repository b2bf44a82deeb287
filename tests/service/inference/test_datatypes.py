"""v2 datatypes: a numpy array's datatype, whatever its byte order, as tritonclient names it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from tritonclient.utils import np_to_triton_dtype

from focal_eval.service.inference.datatypes import datatype_of, manifest_datatype


@pytest.mark.parametrize(
    ("dtype", "datatype"),
    [
        pytest.param(np.bool_, "BOOL", id="bool"),
        pytest.param(np.uint8, "UINT8", id="uint8"),
        pytest.param(np.uint16, "UINT16", id="uint16"),
        pytest.param(np.uint32, "UINT32", id="uint32"),
        pytest.param(np.uint64, "UINT64", id="uint64"),
        pytest.param(np.int8, "INT8", id="int8"),
        pytest.param(np.int16, "INT16", id="int16"),
        pytest.param(np.int32, "INT32", id="int32"),
        pytest.param(np.int64, "INT64", id="int64"),
        pytest.param(np.float16, "FP16", id="float16"),
        pytest.param(np.float32, "FP32", id="float32"),
        pytest.param(">f8", "FP64", id="float64-big-endian"),
    ],
)
def test_datatype_of_matches_tritonclient(dtype: Any, datatype: str) -> None:
    array = np.zeros(2, dtype=dtype)
    assert datatype_of(array) == datatype
    if np.dtype(dtype).isnative:
        assert np_to_triton_dtype(array.dtype) == datatype


@pytest.mark.parametrize(
    "dtype",
    [
        pytest.param(np.complex64, id="complex"),
        pytest.param(object, id="object"),
        pytest.param("U3", id="str"),
        pytest.param("datetime64[s]", id="datetime"),
    ],
)
def test_datatype_of_unsupported_dtype_is_value_error(dtype: Any) -> None:
    with pytest.raises(ValueError, match="has no supported Open Inference Protocol datatype"):
        datatype_of(np.zeros(2, dtype=dtype))


@pytest.mark.parametrize(
    ("dtype", "datatype"),
    [
        pytest.param("float32", "FP32", id="float32"),
        pytest.param("float64", "FP64", id="float64"),
        pytest.param("int64", "INT64", id="int64"),
    ],
)
def test_manifest_dtypes_name_their_datatype(dtype: str, datatype: str) -> None:
    assert manifest_datatype(dtype) == datatype
