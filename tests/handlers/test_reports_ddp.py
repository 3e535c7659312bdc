"""The evaluation reports under ``torch.distributed``: two gloo ranks on 127.0.0.1, each evaluating half of the cases,
write one report (rank 0) equal to the report of one process over all cases; so do more ranks, with uneven shards and
batches of several cases, simulated in this process."""

from __future__ import annotations

import hashlib
import json
from unittest import mock

import numpy as np
import pytest
import torch
from gloo_ranks import run_on_two_ranks
from ignite.engine import Engine
from monai.data import DistributedSampler

from unimiss_monai.handlers import ClassificationReport, SegmentationReport, classification_report, segmentation_report

RNG = np.random.default_rng(3)
PROBS = RNG.dirichlet([1, 1, 1], 10).astype(np.float32)
LABELS = np.arange(10) % 3
MASKS = RNG.random((10, 2, 12, 12)) > 0.5  # (case, pred/label, X, Y)
IMAGES = RNG.random((10, 1, 12, 12)).astype(np.float32)


#: the datalist lists case1 twice (entries 1 and 2), and case 7 fails: two ranks deal entry 1 to rank 1 and entry 2 to
#: rank 0, which a join in rank order would list (and number) first
FILES = [f"/data/case{1 if i == 2 else i}.nii.gz" for i in range(10)]
FAILED = 7
UNNAMED = 9  # a segmentation case of no file name: named by its row, after the failed case (case_0008)


def _cls_batches(cases, named=True):
    name = lambda i: {"image_meta_dict": {"filename_or_obj": FILES[i]}} if named else {}  # noqa: E731
    return [[{"pred": torch.from_numpy(PROBS[i]), "label": torch.tensor([float(LABELS[i])]), **name(i),
              "case": FILES[i], "failed": "unreadable" if i == FAILED else ""}] for i in cases]


def _seg_batches(cases):
    onehot = lambda m: torch.stack([torch.from_numpy(~m), torch.from_numpy(m)]).float()  # noqa: E731
    meta = lambda i: {} if i == UNNAMED else {  # noqa: E731
        f"{key}_meta_dict": {"filename_or_obj": FILES[i]} for key in ("image", "label")}
    return [[{"pred": onehot(MASKS[i, 0]), "label": onehot(MASKS[i, 1]), "image": torch.from_numpy(IMAGES[i]),
              **meta(i), "case": FILES[i], "failed": "unreadable" if i == FAILED else ""}] for i in cases]


def _evaluate(out, cases, batch_size=1, named=True):
    """Both reports over ``cases`` (in batches of ``batch_size``; classification cases ``named`` by their files or not)
    on one engine each; returns nothing, writes under ``out``."""
    for handler, items in ((ClassificationReport(out / "cls", ["a", "b", "c"]), _cls_batches(cases, named)),
                           (SegmentationReport(out / "seg", ["lesion"]), _seg_batches(cases))):
        engine = Engine(lambda e, b: b)
        handler.attach(engine)
        batches = [[b[0] for b in items[k:k + batch_size]] for k in range(0, len(items), batch_size)]
        try:
            engine.run(batches, max_epochs=1)
        except RuntimeError as err:  # the failed case ends the evaluation once its report is written
            if "1 of 10 cases failed" not in str(err):
                raise


def _rank(rank, out):
    import torch.distributed as dist

    from unimiss_monai.utils.dist import coordination_group

    groups, gather = [], dist.all_gather_object

    def recorded(*args, **kwargs):
        groups.append(kwargs.get("group"))
        return gather(*args, **kwargs)

    dist.all_gather_object = recorded  # this process ends with the test
    _evaluate(out / f"rank{rank}", range(rank, 10, 2))  # an interleaved shard, as DistributedSampler deals them
    # both reports gather over the long-timeout gloo group: a rank done first waits for the slowest one's evaluation
    group = coordination_group()
    assert group is not None and groups == [group, group], groups


def test_two_ranks_report_like_one_process(tmp_path):
    run_on_two_ranks(_rank, tmp_path)
    _evaluate(tmp_path / "single", range(10))
    assert not (tmp_path / "rank1").exists()  # only rank 0 writes
    ddp, single = tmp_path / "rank0", tmp_path / "single"
    metrics = {run: json.loads((run / "cls" / "metrics.json").read_text()) for run in (ddp, single)}
    # the same prediction file, byte for byte, whatever the number of ranks: each report records its checksum
    written = {run: (run / "cls" / "evaluation_predictions.csv").read_bytes() for run in (ddp, single)}
    assert written[ddp] == written[single]
    assert metrics[ddp]["predictions_sha256"] == hashlib.sha256(written[ddp]).hexdigest()
    assert metrics[ddp] == metrics[single]
    # every case once, in datalist order, the repeated entry numbered after its first listing, the failed case last
    rows = (ddp / "cls" / "evaluation_predictions.csv").read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == [
        "case0.nii.gz", "case1.nii.gz", "case1.nii.gz_2", "case3.nii.gz", "case4.nii.gz", "case5.nii.gz",
        "case6.nii.gz", "case8.nii.gz", "case9.nii.gz", "/data/case7.nii.gz"]
    assert rows[1].split(",")[1:4] == [f"{p:.6f}" for p in PROBS[1]]  # entry 1's own probabilities, not entry 2's
    assert rows[2].split(",")[1:4] == [f"{p:.6f}" for p in PROBS[2]]
    assert metrics[ddp]["num_failed"] == 1
    # the segmentation report too: its per-case JSON and CSV and its overlay grid, byte for byte
    for name in ("segmentation_report.json", "segmentation_report.csv", "segmentation_report.png"):
        assert (ddp / "seg" / name).read_bytes() == (single / "seg" / name).read_bytes(), name
    seg = json.loads((ddp / "seg" / "segmentation_report.json").read_text())
    assert seg["num_cases"] == 9 and seg["failed"] == [{"case": FILES[FAILED], "reason": "unreadable"}]
    assert [c["case"] for c in seg["cases"]] == [
        "case0", "case1", "case1_2", "case3", "case4", "case5", "case6", "case8", "case_0008"]
    own = [SegmentationReport(tmp_path / "one", ["lesion"]).add(_seg_batches([i])[0][0])["dice"][0] for i in (1, 2)]
    assert own[0] != own[1]  # entries 1 and 2 score apart: each row is that entry's own
    assert [seg["cases"][i]["dice"]["lesion"] for i in (1, 2)] == [round(float(d), 6) for d in own]


def _simulated_ranks(out, world, batch_size, named):
    """Each of ``world`` ranks evaluates in turn in this process the shard MONAI's unshuffled ``DistributedSampler``
    (``even_divisible=False``) deals it; rank 0, last, gathers every rank's shard in rank order and writes."""
    gathered = {classification_report: {}, segmentation_report: {}}  # each report's shards, by rank
    for rank in [*range(1, world), 0]:
        shard = list(DistributedSampler(range(10), even_divisible=False, shuffle=False, num_replicas=world, rank=rank))
        with mock.patch.multiple(classification_report, **_rank_of(rank, world, gathered[classification_report])), \
                mock.patch.multiple(segmentation_report, **_rank_of(rank, world, gathered[segmentation_report])):
            _evaluate(out, shard, batch_size, named)


def _rank_of(rank, world, shards):
    """What a report module asks of ``torch.distributed``, as rank ``rank`` of ``world`` would be answered."""
    def gather(objects, group=None):
        shards[rank] = objects[0]
        return [shards[r] for r in sorted(shards)] if rank == 0 else []

    return {"rank_and_world": lambda: (rank, world), "gather_objects": gather, "coordination_group": lambda: None}


@pytest.mark.parametrize("world,batch_size", [(3, 2), (4, 3)])
@pytest.mark.parametrize("named", [True, False])
def test_more_ranks_of_uneven_shards_and_batches_report_like_one_process(tmp_path, world, batch_size, named):
    _simulated_ranks(tmp_path / "ddp", world, batch_size, named)
    _evaluate(tmp_path / "single", range(10), named=named)
    for name in ("cls/evaluation_predictions.csv", "cls/metrics.json", "seg/segmentation_report.json",
                 "seg/segmentation_report.csv", "seg/segmentation_report.png"):
        assert (tmp_path / "ddp" / name).read_bytes() == (tmp_path / "single" / name).read_bytes(), name
    rows = (tmp_path / "ddp" / "cls" / "evaluation_predictions.csv").read_text().splitlines()[1:]
    if not named:  # cases of no file name by their rows, as one process numbers them, whatever the number of ranks
        assert [r.split(",")[0] for r in rows] == [*(f"case_{k}" for k in range(9)), "/data/case7.nii.gz"]
