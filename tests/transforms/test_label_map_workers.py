"""The both-lungs warning of a label file is said once in a run, not again by each data-loading worker: a worker
started by spawn (macOS, Windows, forkserver) imports the module afresh, and said every file again, every epoch."""

from __future__ import annotations

import logging
import pickle
from multiprocessing.reduction import ForkingPickler

import numpy as np
import torch
from monai.data import Dataset, MetaTensor
from torch.utils.data import DataLoader

from unimiss_monai.transforms import LabelMapToMasksd
from unimiss_monai.transforms.labels import label_map
from unimiss_monai.utils import once

STRUCTURES = ["lung_left", "lung_right", "heart", "clavicle_left", "clavicle_right"]
SAID = "covers both sides of the image"


def _both_lungs(name: str) -> dict:
    """A 0/1 mask of both lungs, read by value as lung_left: the case the warning is for."""
    both = np.zeros((1, 40, 30), np.float32)
    both[0, 4:16, 5:25] = both[0, 24:36, 5:25] = 1
    return {"image": MetaTensor(torch.rand(1, 40, 30), meta={"filename_or_obj": f"{name}_image.png"}),
            "label": MetaTensor(torch.as_tensor(both), meta={"filename_or_obj": name})}


def test_the_files_said_go_with_the_transform_to_a_process_that_imports_the_module_afresh(monkeypatch, caplog):
    transform = LabelMapToMasksd("label", structures=STRUCTURES)
    plain = pickle.dumps(transform)
    with caplog.at_level(logging.WARNING, logger=label_map.__name__):
        transform(_both_lungs("pickled_both.png"))
        sent = ForkingPickler.dumps(transform)  # as a DataLoader sends its data set to a worker it spawns
        monkeypatch.setattr(once, "_SAID", {})  # the worker's own, fresh module
        pickle.loads(sent)(_both_lungs("pickled_both.png"))
    assert sum(SAID in r.getMessage() for r in caplog.records) == 1
    # pickled plainly, as the disk cache keys its entries, the transform is the same whatever was said
    assert pickle.dumps(transform) == plain


def test_spawned_workers_do_not_say_it_again(capfd, caplog):
    transform = LabelMapToMasksd("label", structures=STRUCTURES)
    items = [_both_lungs("spawned_both.png") for _ in range(2)]
    with caplog.at_level(logging.WARNING, logger=label_map.__name__):
        transform(items[0])  # the run's check of its data, in the main process, before the loader starts
    assert sum(SAID in r.getMessage() for r in caplog.records) == 1
    capfd.readouterr()
    # one worker, one epoch: a worker process costs an import of torch and MONAI, and each said it as this one would
    loader = DataLoader(Dataset(items, transform), batch_size=1, num_workers=1, multiprocessing_context="spawn")
    assert len(list(loader)) == 2
    assert SAID not in capfd.readouterr().err  # a worker's log goes to its stderr, here the test's
