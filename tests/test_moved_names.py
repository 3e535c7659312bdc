"""Old import paths of names that moved to their room keep working for one release: the same object, with a
DeprecationWarning that names the new place."""

from __future__ import annotations

import importlib

import pytest

MOVED = [
    ("unimiss_monai.benchmarks.drr", "measure", "unimiss_monai.benchmarks.machine"),
    ("unimiss_monai.benchmarks.drr", "cpu_model", "unimiss_monai.benchmarks.machine"),
    ("unimiss_monai.engines.classification_inference", "ClassProbabilityWriter", "unimiss_monai.handlers"),
    ("unimiss_monai.engines.classification_inference", "CheckSpatialDimsd", "unimiss_monai.transforms"),
    ("unimiss_monai.engines.classification_report", "roc_auc", "unimiss_monai.metrics"),
    ("unimiss_monai.engines.classification_report", "MacroAUC", "unimiss_monai.metrics"),
    ("unimiss_monai.engines.classification_report", "ClassificationReport", "unimiss_monai.handlers"),
    ("unimiss_monai.engines.classification_report", "write_report", "unimiss_monai.handlers"),
    ("unimiss_monai.engines.segmentation_inference", "SegmentationWriter", "unimiss_monai.handlers"),
    ("unimiss_monai.engines.segmentation_inference", "find_segmentation_inputs", "unimiss_monai.data.segmentation_inputs"),
    ("unimiss_monai.engines.segmentation_report", "compute_segmentation_metrics", "unimiss_monai.metrics"),
    ("unimiss_monai.engines.segmentation_report", "SegmentationReport", "unimiss_monai.handlers"),
    ("unimiss_monai.engines.segmentation_report", "save_overlay_grid", "unimiss_monai.visualize"),
    ("unimiss_monai.engines.tolerant_inference", "TolerantDataset", "unimiss_monai.data.tolerant"),
    ("unimiss_monai.engines.tolerant_inference", "ForwardFailureGuard", "unimiss_monai.handlers"),
    ("unimiss_monai.engines.tolerant_inference", "guard_forward", "unimiss_monai.handlers"),
    ("unimiss_monai.engines.saliency", "grad_cam", "unimiss_monai.visualize"),
    ("unimiss_monai.engines.attention_rollout", "attention_rollout", "unimiss_monai.visualize"),
    ("unimiss_monai.data.xray", "AsGreyRadiographd", "unimiss_monai.transforms"),
    ("unimiss_monai.data.xray", "CheckMultiLabelMaskd", "unimiss_monai.transforms"),
    ("unimiss_monai.data.xray", "SaveOverlayPNGd", "unimiss_monai.transforms"),
    ("unimiss_monai.data.xray", "SkipFailedd", "unimiss_monai.transforms"),
    ("unimiss_monai.data.xray", "InferenceSummary", "unimiss_monai.handlers"),
    ("unimiss_monai.data.totalsegmentator", "SelectStructuresd", "unimiss_monai.transforms"),
    ("unimiss_monai.data.totalsegmentator", "CheckSegmentationInputd", "unimiss_monai.transforms"),
    ("unimiss_monai.data.grid_checks", "check_dicom_series", "unimiss_monai.data.dicom_checks"),
    ("unimiss_monai.data.grid_checks", "dicom_image_problem", "unimiss_monai.data.dicom_checks"),
]


@pytest.mark.parametrize("old,name,new", MOVED, ids=[f"{o.rsplit('.', 1)[-1]}.{n}" for o, n, _ in MOVED])
def test_old_path_warns_and_returns_the_same_object(old, name, new):
    module = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=rf"{old}\.{name} moved to unimiss_monai\."):
        obj = getattr(module, name)
    assert obj is getattr(importlib.import_module(new), name)


def test_tolerant_root_cause_is_now_failure_reason():
    from unimiss_monai.engines import tolerant_inference
    from unimiss_monai.utils.errors import failure_reason

    with pytest.warns(DeprecationWarning, match="moved to unimiss_monai.utils.errors.failure_reason"):
        assert tolerant_inference.root_cause is failure_reason


def test_unknown_name_is_an_attribute_error():
    from unimiss_monai.engines import saliency

    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        saliency.nothing  # noqa: B018
