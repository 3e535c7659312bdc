"""Seams of reading and checking: a DICOM series one slice of which was exported with its own rescale slope goes
through each CT bundle's own first transforms, built from its config (the loader and the input check after it), and
fails naming that slice; the same series with one slope passes. Before the bundles loaded with ``LoadCTImaged``, the
slice was read in the first slice's int16, wrapped around into plausible HU, and the case passed."""

from __future__ import annotations

import numpy as np
import pytest
from bundle_runner import BUNDLES, configs
from dicom_slopes import AFFINE, SHAPE, SLICE, write_series
from monai.bundle import ConfigParser
from monai.transforms import Compose

from unimiss_monai.data.dicom_series import write_dicom_series
from unimiss_monai.utils.errors import root_cause

# each CT bundle's first transforms, as its own config builds them: the loader and the input check that follows it
CHAINS = [
    ("unimiss_ct_segmentation", "train.json", "train#preprocessing", {"label": "labels"}),
    ("unimiss_ct_segmentation", "inference.json", "preprocessing", {}),
    ("unimiss_ct_classification", "train.json", "train#preprocessing", {"label": 0}),
    ("unimiss_ct_classification", "inference.json", "preprocessing", {}),
    ("unimiss_pretraining", "train.json", "train#ct_render", {}),
]


def _first_two(transform) -> Compose:
    transforms = transform.transforms if isinstance(transform, Compose) else list(transform)
    return Compose(transforms[:2])


@pytest.mark.parametrize("bundle, config, key, extra", CHAINS)
def test_each_ct_bundle_refuses_the_slice_by_name(tmp_path, bundle, config, key, extra):
    parser = ConfigParser()
    parser.read_config(configs(bundle, config))
    chain = _first_two(parser.get_parsed_content(key))
    series = write_series(tmp_path / "series")
    if extra.get("label") == "labels":  # a label map on the same grid: a DICOM series of 0 and 1
        labels = np.zeros(SHAPE, np.float32)
        labels[10:20, 10:20, 3:8] = 1
        extra = {"label": str(write_dicom_series(labels, AFFINE, tmp_path / "labels"))}
    item = {"image": str(series), **extra}
    with pytest.raises(Exception) as err:
        chain(item)
    reason = str(root_cause(err.value))
    assert reason.startswith(f"{series}: 1 of its") and f"index {SLICE}) holds" in reason and "slope" in reason, reason
    good = write_series(tmp_path / "good", slope=1)
    item = {"image": str(good), **extra}
    assert tuple(chain(item)["image"].shape[-3:]) == SHAPE  # the same series with one slope passes


def _loaders(node, where: str = ""):
    """``(config id, target)`` of every ``LoadImage``-like component in a parsed config file."""
    if isinstance(node, dict):
        target = str(node.get("_target_", ""))
        if target.rsplit(".", 1)[-1].startswith(("LoadImage", "LoadCTImage")):
            yield where, target
        for key, value in node.items():
            yield from _loaders(value, f"{where}#{key}" if where else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _loaders(value, f"{where}#{i}")


@pytest.mark.parametrize("bundle", ["unimiss_ct_segmentation", "unimiss_ct_classification", "unimiss_pretraining"])
def test_every_ct_load_of_a_ct_bundle_is_load_ct_image(bundle):
    """The chains above are one per bundle and config; this covers every other CT load of their configs (validation,
    evaluation, the probe, the recipes). Radiographs, pretraining's ``xray`` section, are no series."""
    found = []
    for path in sorted((BUNDLES / bundle / "configs").glob("*")):
        if path.suffix in (".json", ".yaml", ".yml") and path.name not in ("metadata.json", "logging.conf"):
            found += [(path.name, *loader) for loader in _loaders(ConfigParser.load_config_file(path))]
    assert found, "no loader found: the walk is broken"
    plain = [f for f in found if not f[2].endswith(("LoadCTImage", "LoadCTImaged")) and "xray" not in f[1]]
    assert not plain, plain
