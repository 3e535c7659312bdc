"""Runs say what matters: the warnings MONAI raises about our own configs' choices, or about an optional GPU decoder,
are answered, so they do not bury a user's real warnings in every run's log."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
from bundle_runner import BUNDLES, configs

# every config that builds an Orientationd (an overlay over the train.json it changes)
CONFIGS = sorted(p for p in BUNDLES.glob("*/configs/*") if p.suffix in (".json", ".yaml") and p.name != "metadata.json"
                 and "Orientationd" in p.read_text())


def _ids_of(config, target: str, prefix: str = ""):
    """Config ids (``a::0::b``) of every component whose ``_target_`` is ``target``."""
    items = config.items() if isinstance(config, dict) else enumerate(config) if isinstance(config, list) else ()
    if isinstance(config, dict) and config.get("_target_") == target:
        yield prefix
    for key, value in items:
        yield from _ids_of(value, target, f"{prefix}::{key}" if prefix else str(key))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_orientation_names_its_axis_labels(path):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    files = (path.name,) if path.suffix == ".json" else ("train.json", path.name)
    parser.read_config(configs(path.parent.parent.name, *files))
    ids = list(_ids_of(parser.get(), "Orientationd"))
    assert ids, path
    for config_id in ids:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            transform = parser.get_parsed_content(config_id)
        assert not [w for w in caught if "labels" in str(w.message)], f"{path}::{config_id}: {caught[0].message}"
        assert transform.ornt_transform.axcodes == "LPS"


def test_loading_an_image_says_nothing_of_the_missing_gpu_decoder(tmp_path):
    def output(preamble: str) -> str:
        code = (
            f"{preamble}import logging; logging.basicConfig(level=logging.INFO)\n"
            "from monai.transforms import LoadImage\n"
            "for _ in range(3): LoadImage(image_only=True)\n"
        )
        result = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True,
                                timeout=300, cwd=tmp_path, check=True)
        return result.stdout + result.stderr

    # without the package's filters MONAI announces the missing decoder; where it does not, there is nothing to hide
    if "nvImageCodec" not in output(""):
        pytest.skip("this MONAI says nothing of nvImageCodec (installed, or no longer announced)")
    assert "nvImageCodec" not in output("import unimiss_monai\n")
