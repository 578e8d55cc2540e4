"""Option types and ranges (issue 15, finding 9): every option a request or a Modelfile sets is
checked before it reaches a runner, and a bad one is a 400 naming the option."""

from __future__ import annotations

import pytest

from corral.errors import InvalidRequest
from corral.options import RANGES, convert_option, merge


@pytest.mark.parametrize(("name", "value", "message"), [
    ("num_batch", -5, 'option "num_batch" must be at least 1, not -5'),
    ("num_ctx", -5, 'option "num_ctx" must be at least 1, not -5'),
    ("num_ctx", 0, 'option "num_ctx" must be at least 1, not 0'),
    ("num_ctx", 2**40, 'option "num_ctx" must be a 32-bit integer, not 1099511627776'),
    ("num_predict", 1e30, 'option "num_predict" must be of type integer'),
    ("seed", 1e30, 'option "seed" must be of type integer'),
    ("num_predict", float("inf"), 'option "num_predict" must be of type integer'),
    ("num_thread", 100000, 'option "num_thread" must be between 0 and 512, not 100000'),
    ("mirostat", 7, 'option "mirostat" must be between 0 and 2, not 7'),
    ("top_p", 1.5, 'option "top_p" must be between 0 and 1, not 1.5'),
    ("temperature", -3, 'option "temperature" must be at least 0, not -3'),
    ("temperature", float("nan"), 'option "temperature" must be a finite number'),
    ("presence_penalty", 1e39, 'option "presence_penalty" must be a float32, not 1e+39'),
    ("top_k", -(2**40), 'option "top_k" must be a 32-bit integer, not -1099511627776'),
    ("use_mmap", 1, 'option "use_mmap" must be of type boolean'),
])
def test_out_of_range_options_are_refused_by_name(name: str, value: object, message: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        convert_option(name, value)
    assert raised.value.message == message


@pytest.mark.parametrize(("name", "value", "converted"), [
    ("num_ctx", 2048.0, 2048), ("num_ctx", 2.7, 2), ("num_predict", -1, -1), ("num_predict", -2, -2),
    ("seed", 2**40, 2**40), ("seed", -1, -1), ("top_k", -1, -1), ("num_thread", 0, 0), ("temperature", 0, 0.0),
    ("frequency_penalty", -1.5, -1.5), ("repeat_last_n", -1, -1), ("num_keep", -1, -1), ("num_gpu", -1, -1),
])
def test_values_ollama_clients_send_are_accepted(name: str, value: object, converted: object) -> None:
    assert convert_option(name, value) == converted


def test_every_number_option_has_a_range() -> None:
    from corral.options import FLOAT, INT, OPTION_TYPES

    assert {name for name, kind in OPTION_TYPES.items() if kind in (INT, FLOAT)} == set(RANGES)


def test_model_parameters_are_checked_like_request_options() -> None:
    with pytest.raises(InvalidRequest, match='option "num_batch" must be at least 1'):
        merge({"num_batch": -5}, {}, context_length=4096)
