"""The one root-cause walker: through MONAI's wrappers (``applying transform``, ``Failed to evaluate``), explicit
causes and handled contexts, to the error that actually happened, and the one-line reason built on it."""

from __future__ import annotations

import pytest
from monai.bundle import ConfigParser
from monai.transforms import Compose, Lambdad

from raising import raised
from unimiss_monai.utils.errors import exception_chain, failed_transform, failure_reason, root_cause


def _refuse(_):
    raise ValueError("/data/ct.nii.gz: has 3 non-finite value(s)\nsecond line of detail")


def test_through_a_compose_to_the_transform_error():
    err = raised(lambda: Compose([Lambdad("image", _refuse)])({"image": 0}))
    assert str(err).startswith("applying transform")
    cause = root_cause(err)
    assert type(cause) is ValueError and str(cause).startswith("/data/ct.nii.gz: has 3")
    assert failure_reason(err) == "ValueError: /data/ct.nii.gz: has 3 non-finite value(s)"
    assert failed_transform(err) == "Lambdad"


def test_through_config_evaluation():
    err = raised(lambda: ConfigParser({"x": "$int('seven')"}).get_parsed_content("x"))
    assert str(err).startswith("Failed to evaluate") and failed_transform(err) is None
    assert failure_reason(err) == "ValueError: invalid literal for int() with base 10: 'seven'"


def test_chain_order_context_and_suppression():
    def handled():
        try:
            raise KeyError("first")
        except KeyError:
            raise RuntimeError("while handling")

    err = raised(handled)
    assert [type(e) for e in exception_chain(err)] == [RuntimeError, KeyError] and isinstance(root_cause(err), KeyError)

    def suppressed():
        try:
            raise KeyError("hidden")
        except KeyError:
            raise RuntimeError("on its own") from None

    err = raised(suppressed)
    assert root_cause(err) is err and failure_reason(err) == "RuntimeError: on its own"


def test_a_cycle_ends_and_an_empty_message_gives_the_type():
    a, b = ValueError("a"), TypeError()
    a.__cause__, b.__cause__ = b, a
    assert list(exception_chain(a)) == [a, b] and root_cause(a) is b
    assert failure_reason(a) == "TypeError"


@pytest.mark.parametrize("err", [ValueError("plain"), OSError(2, "No such file")])
def test_an_unwrapped_error_is_its_own_cause(err):
    assert root_cause(err) is err and failure_reason(err) == f"{type(err).__name__}: {err}"
