"""The fine-tune bundles' ``multi_gpu_train.json`` overlays, run for real: ``torchrun`` with two processes on CPU (gloo),
one segmentation (3D) and one classification (2D) bundle, one smoke epoch each."""

from __future__ import annotations

import re

import pytest
import torch
from monai.bundle import ConfigParser

from bundle_runner import BUNDLES, configs, run_bundle_cli

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# bundle: (sample set, overrides on top of smoke.yaml, validation key metric)
CASES = {
    "unimiss_ct_segmentation": (
        "ct_segmentation", {"roi_size": [16, 32, 32], "pixdim": [10.0, 10.0, 10.0], "max_epochs": 1}, "val_mean_dice",
    ),
    "unimiss_cxr_classification": ("cxr_classification", {"max_epochs": 1}, "val_auc"),
}


def _scalar_tags(event_file) -> list[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(event_file))
    events.Reload()
    return events.Tags()["scalars"]


@pytest.mark.parametrize("bundle", sorted(CASES))
def test_two_process_gloo_smoke_training(bundle, sample_set, tmp_path):
    dataset, overrides, val_metric = CASES[bundle]
    files = ["train.json", "multi_gpu_train.json", "smoke.yaml"]
    paths = {"bundle_root": str(tmp_path), "output_dir": str(tmp_path / "eval")}  # the model: tmp_path/models/smoke
    port = 29541 + sorted(CASES).index(bundle)
    proc = run_bundle_cli(bundle, files, nproc=2, master_port=port, timeout=300, dataset_dir=str(sample_set(dataset)), **paths, **overrides)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]

    # only rank 0 keeps the stats handlers: one metrics line per epoch, not one per process
    assert len(re.findall(rf"Epoch\[1\] Metrics -- {val_metric}", log)) == 1, log[-4000:]
    # both ranks' evaluators see the validation metric gathered over the whole split: the same value twice
    values = re.findall(rf"Got new best metric of {val_metric}: ([-0-9.e]+)", log)
    assert len(values) == 2 and values[0] == values[1], values

    # only rank 0 writes TensorBoard events: no other rank leaves an empty event file beside its files
    event_files = sorted(tmp_path.rglob("events.out.tfevents.*"))
    assert event_files and all(_scalar_tags(f) for f in event_files), event_files

    # only rank 0 saves, and it saves the plain model (no DistributedDataParallel "module." prefix)
    ckpt = torch.load(tmp_path / "models" / "smoke" / "model.pt", map_location="cpu", weights_only=True)
    assert set(ckpt) == {"model", "info"} and ckpt["info"]["bundle"] == bundle
    assert not any(k.startswith("module.") for k in ckpt["model"])
    parser = ConfigParser()
    parser.read_config(configs(bundle, "train.json", "smoke.yaml"))
    parser.update({**overrides, "bundle_root": str(BUNDLES / bundle), "device": "$torch.device('cpu')"})
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(ckpt["model"])  # strict: every key matches the single-process network


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback")
@pytest.mark.parametrize("bundle", ["unimiss_ct_classification", "unimiss_ct_segmentation", "unimiss_cxr_classification", "unimiss_cxr_segmentation"])
def test_overlay_resolves_to_cpu_without_cuda(bundle):
    """All four overlays (two of them run above) pick the CPU device and no DDP device_ids when CUDA is absent."""
    parser = ConfigParser()
    parser.read_config(configs(bundle, "train.json", "multi_gpu_train.json"))
    assert parser.get_parsed_content("device") == torch.device("cpu")
    assert parser.get_parsed_content("network#device_ids") is None
    assert parser["train#dataloader#sampler"].replace("::", "#") == "@train#sampler" and not parser["train#dataloader#shuffle"]


@pytest.mark.parametrize("bundle", ["unimiss_ct_classification", "unimiss_cxr_classification"])
@pytest.mark.parametrize("balanced", ["true", "false"])
def test_overlay_keeps_class_balanced_sampling(bundle, balanced, tmp_path):
    """``class_balanced_sampling`` holds under the overlay too: each rank draws its shard by the class weights (MONAI's
    ``DistributedWeightedRandomSampler``), where a plain ``DistributedSampler`` would drop the balancing silently."""
    import torch.distributed as dist
    from monai.data import DistributedSampler, DistributedWeightedRandomSampler

    parser = ConfigParser()
    parser.read_config(configs(bundle, "train.json", "multi_gpu_train.json"))
    weights = [0.0, 1.0] * 8  # only the odd items may be drawn when balancing
    parser.update({"class_balanced_sampling": balanced, "train#dataset": "$list(range(16))",
                   "train#sample_weights": weights})
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        sampler = parser.get_parsed_content("train#sampler")
        assert parser.get_parsed_content("train#dataloader#sampler") is sampler
        drawn = set(sampler)
    finally:
        dist.destroy_process_group()
    if balanced == "true":
        assert isinstance(sampler, DistributedWeightedRandomSampler) and drawn and drawn <= set(range(1, 16, 2)), drawn
    else:
        assert type(sampler) is DistributedSampler and drawn == set(range(16))
