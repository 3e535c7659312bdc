"""Outlines, palette and projected-label grouping, against hand-computed values."""

from __future__ import annotations

import numpy as np

from unimiss_monai.report.images import draw_outlines, grey_rgb, outline, resize_nearest
from unimiss_monai.report.palette import PALETTE, colour, hex_colour
from unimiss_monai.report.sections.drr import group_projected_labels


def test_outline_of_a_square_is_its_border():
    mask = np.zeros((9, 9), bool)
    mask[2:7, 2:7] = True  # 5x5 square: 25 pixels, 9 inside, 16 on the border
    edge = outline(mask)
    assert edge.sum() == 16
    assert not edge[3:6, 3:6].any() and edge[2, 2:7].all() and edge[6, 2:7].all()
    assert outline(mask, width=2).sum() == 24  # 25 - the single centre pixel left after two erosions
    assert not outline(np.zeros((4, 4), bool)).any()


def test_draw_outlines_colours_only_the_border():
    rgb = grey_rgb(np.full((9, 9), 0.5), window=(0, 1))
    mask = np.zeros((9, 9), bool)
    mask[2:7, 2:7] = True
    out = draw_outlines(rgb, {"heart": mask}, width=1)
    assert (out[outline(mask)] == colour("heart")).all()
    assert (out[~outline(mask)] == rgb[~outline(mask)]).all()
    # a mask on a coarser grid is resized (nearest) onto the picture
    small = draw_outlines(grey_rgb(np.zeros((18, 18)), window=(0, 1)), {"heart": mask}, width=1)
    assert (small == colour("heart")).all(-1).sum() == outline(resize_nearest(mask, (18, 18))).sum()


def test_grey_window_and_percentiles():
    img = np.array([[-1000.0, 0.0], [500.0, 2000.0]])
    assert grey_rgb(img, window=(-1000, 1000))[..., 0].tolist() == [[0, 127], [191, 255]]
    assert grey_rgb(np.arange(100.0).reshape(10, 10), percentiles=(0, 100))[9, 9, 0] == 255


def test_palette_is_fixed_and_distinct():
    assert len(set(PALETTE.values())) == len(PALETTE)
    assert colour("heart") == PALETTE["heart"] and hex_colour("heart") == "#%02x%02x%02x" % PALETTE["heart"]
    from unimiss_monai.conventions import structure_colour

    # a structure of no palette entry: the report's colour is the one every bundle picture gives it
    assert colour("not_a_listed_structure") == structure_colour("not_a_listed_structure")


def test_projected_labels_group_by_structure():
    names = {0: "lung_upper_lobe_left", 1: "lung_lower_lobe_left", 2: "heart", 3: "vertebrae_T4", 4: "vertebrae_T5",
             5: "gallbladder"}
    t = np.zeros((4, 4, 6), np.float32)
    t[0, 0, 0] = t[0, 0, 1] = 0.6  # each lobe under the 1 mm threshold, their sum over it
    t[1, 1, 2] = 5.0
    t[2, 2, 3] = 2.0
    t[3, 3, 4] = 2.0
    t[3, 0, 5] = 9.0  # not a reported group
    masks = group_projected_labels(t, names)
    assert set(masks) == {"lung_left", "heart", "spine"}
    assert masks["lung_left"].sum() == 1 and masks["lung_left"][0, 0]
    assert masks["spine"].sum() == 2


def test_collapse_verdict_reads_the_entropy_against_log_k():
    import math

    from unimiss_monai.report.sections.pretraining import collapse_verdict

    k = 64
    uniform = {"teacher_entropy": [[i, min(math.log(k), 2 + 0.1 * i)] for i in range(1, 101)]}
    text = collapse_verdict(uniform, k)
    assert "uniform" in text and f"{math.log(k):.2f}" in text and "iteration 20" in text  # 2 + 0.1 i >= 0.95 log 64 first at i = 20
    assert "one prototype" in collapse_verdict({"teacher_entropy": [[i, 0.01] for i in range(30)]}, k)
    assert collapse_verdict({"teacher_entropy": [[i, 2.0] for i in range(30)]}, k) == ""
    assert collapse_verdict(uniform, None) == ""


def test_probe_notes_count_a_stage_map_as_learnt_only_above_the_baseline_and_its_untrained_value():
    from unimiss_monai.report.sections.pretraining import probe_notes

    def entry(epoch, cls, maps=None):
        e = {"epoch": epoch, "knn_accuracy": cls, "pixel_baseline": 0.22}
        return {**e, "feature_maps": maps} if maps else e

    start = {"stage1": 0.40, "stage2": 0.20, "stage3": 0.12, "stage4": 0.15}
    end = {"stage1": 0.35, "stage2": 0.21, "stage3": 0.34, "stage4": 0.15}
    texts = [n.text for n in probe_notes([entry(0, 0.15, start), entry(40, 0.07, end)])]
    # stage1 is above raw voxels but fell from its untrained value; stage3 rose above both
    assert len(texts) == 2 and "CLS embedding (0.07)" in texts[0] and "(0.22)" in texts[0]
    assert "stage3 map ends at 0.34" in texts[1] and "untrained value (0.12)" in texts[1]
    # nothing learnt anywhere: said once
    flat = [n.text for n in probe_notes([entry(0, 0.15, start), entry(40, 0.07, start)])]
    assert len(flat) == 2 and "No stage map" in flat[1]
    # a CLS above the baseline and no stage maps: nothing to warn about
    assert probe_notes([entry(1, 0.3), entry(2, 0.5)]) == []
    assert probe_notes([{"epoch": 1, "knn_accuracy": 0.3}]) == []
