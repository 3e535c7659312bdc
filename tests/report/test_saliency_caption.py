"""The classification section's saliency caption says what the maps can show: the last stage's token grid upsampled,
which weighed in the prediction, not where a finding lies (it said "where the network looked")."""

from __future__ import annotations

from unimiss_monai.report.document import Figure
from unimiss_monai.report.run_folder import RunFolder
from unimiss_monai.report.sections.classification import classification_section

from .synthetic_run import make_run


def test_the_caption_does_not_say_the_maps_localise_a_finding(tmp_path):
    run, samples = make_run(tmp_path)
    captions = {b.name: b.caption for b in classification_section(RunFolder(run, samples)).blocks
                if isinstance(b, Figure) and b.name.startswith("saliency")}
    assert set(captions) == {"saliency_cxr_classification", "saliency_ct_classification"}
    for caption in captions.values():
        assert "where the network looked" not in caption
        assert "one value per token of the encoder's last stage, upsampled" in caption
        assert "not where a finding lies" in caption and "grid and cell size" in caption
    assert "a map with no single peak (flat in-plane, or all zero) has no +" in captions["saliency_ct_classification"]
    assert "+" not in captions["saliency_cxr_classification"]
