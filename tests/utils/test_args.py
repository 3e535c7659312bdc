"""``as_bool``: boolean config ids given as command-line strings (``--save_saliency false``) read as booleans."""

from __future__ import annotations

from pathlib import Path

import pytest
from monai.bundle import ConfigParser

from unimiss_monai.utils import as_bool
from unimiss_monai.utils.args import as_count

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"


@pytest.mark.parametrize(
    "value, expected",
    [(True, True), (False, False), (1, True), (0, False), ("true", True), ("False", False), ("FALSE", False),
     ("Yes", True), ("no", False), ("1", True), ("0", False), (" true\n", True)],
)
def test_accepted_values(value, expected):
    assert as_bool(value, "flag") is expected


@pytest.mark.parametrize("value", ["maybe", "", "2", "t", None, 2, -1, 0.0, 1.0, [True]])
def test_refused_values_name_the_id(value):
    with pytest.raises(ValueError) as err:
        as_bool(value, "save_saliency")
    message = str(err.value)
    assert "\n" not in message and "'save_saliency'" in message and "true/false" in message and repr(value) in message


def _parse(bundle: str, config: str, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(BUNDLES / bundle / "configs" / config))
    parser.update({"bundle_root": str(BUNDLES / bundle), **overrides})
    return parser


# (bundle, config, boolean id, an id whose parsed value is that boolean, or the expression's other outcome)
CONSUMERS = [
    ("unimiss_cxr_classification", "inference.json", "save_saliency", "save_saliency_flag"),
    ("unimiss_ct_classification", "inference.json", "multi_label", "postprocessing#transforms#0#sigmoid"),
    ("unimiss_cxr_classification", "train.json", "multi_label", "loss#multi_label"),
    ("unimiss_cxr_classification", "train.json", "class_balanced_sampling", "train#dataloader#shuffle"),
    ("unimiss_ct_classification", "train.json", "amp", "train#trainer#amp"),
    ("unimiss_ct_segmentation", "inference.json", "deep_supervision", "network_def#deep_supervision"),
]


@pytest.mark.parametrize("bundle, config, bool_id, consumer", CONSUMERS)
def test_command_line_strings_reach_the_consumer_as_booleans(bundle, config, bool_id, consumer):
    negate = _parse(bundle, config)[consumer].startswith("$not ")
    for text, value in [("false", False), ("False", False), ("FALSE", False), ("true", True), ("YES", True)]:
        parsed = _parse(bundle, config, **{bool_id: text}).get_parsed_content(consumer, instantiate=False)
        assert parsed is (not value if negate else value), (bool_id, text)
    # MONAI wraps a failing expression in a RuntimeError; the cause is as_bool's one-line message
    with pytest.raises(RuntimeError) as err:
        _parse(bundle, config, **{bool_id: "maybe"}).get_parsed_content(consumer, instantiate=False)
    cause = err.value.__cause__
    assert isinstance(cause, ValueError) and str(cause).startswith(f"config id '{bool_id}' is 'maybe', not a boolean")


def test_linear_probe_false_string_keeps_the_encoder_trainable():
    """``--linear_probe false`` used to freeze the encoder for every epoch (a non-empty string is true)."""
    parser = _parse("unimiss_ct_classification", "train.json", linear_probe="false", max_epochs=7)
    assert parser.get_parsed_content("freeze_encoder_epochs") == 0
    parser = _parse("unimiss_ct_classification", "train.json", linear_probe="TRUE", max_epochs=7)
    assert parser.get_parsed_content("freeze_encoder_epochs") == 7


def test_deep_supervision_string_selects_the_loss():
    from unimiss_monai.losses import StackedDeepSupervisionLoss

    plain = _parse("unimiss_ct_segmentation", "train.json", deep_supervision="False").get_parsed_content("train_loss")
    stacked = _parse("unimiss_ct_segmentation", "train.json", deep_supervision="true").get_parsed_content("train_loss")
    assert not isinstance(plain, StackedDeepSupervisionLoss) and isinstance(stacked, StackedDeepSupervisionLoss)


@pytest.mark.parametrize("value, expected", [(3, 3), ("3", 3), (" 12 ", 12)])
def test_as_count_reads_whole_numbers(value, expected):
    assert as_count(value, "--n") == expected


@pytest.mark.parametrize("value", ["abc", "2.5", 2.5, True, 0, "0", "-1", None])
def test_as_count_refuses_anything_else_naming_the_option(value):
    with pytest.raises(ValueError, match=r"^--n must be a whole number of at least 1, got "):
        as_count(value, "--n")


def test_a_study_count_that_is_no_number_is_one_line_naming_the_option():
    from unimiss_monai.cli import main

    with pytest.raises(ValueError, match="^label-efficiency: --max_epochs must be a whole number of at least 1, got 'abc'$"):
        main(["label-efficiency", "--bundle", "unimiss_cxr_segmentation", "--max_epochs", "abc"])


def test_ct_segmentation_freezes_a_pretrained_encoder_for_at_most_half_the_run(tmp_path):
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"")
    for path, epochs, frozen in [(str(weights), 300, 10), (str(weights), "2", 1), ("null", 300, 0), (None, 300, 0)]:
        parser = _parse("unimiss_ct_segmentation", "train.json", pretrained_path=path, max_epochs=epochs)
        assert parser.get_parsed_content("freeze_encoder_epochs") == frozen, (path, epochs)


@pytest.mark.parametrize("value, expected", [(None, None), ("", None), ("null", None), ("None", None), (" NULL ", None),
                                             ("a/model.pt", "a/model.pt")])
def test_optional_path(value, expected):
    from unimiss_monai.utils import optional_path

    assert optional_path(value) == expected
