"""``verify-bundles``: the checks MONAI model-zoo's CI runs on a bundle, offline, one line per bundle and check.

Per bundle:

- ``files``: ``configs/metadata.json``, ``LICENSE``, ``docs/README.md`` and a ``train.json`` or ``inference.json``;
- ``metadata``: ``monai.bundle.verify_metadata`` against the schema copy shipped in
  ``unimiss_monai/resources`` (the metadata's ``schema`` URL must name that file; nothing is downloaded);
- ``changelog``: the version is a plain version with a changelog entry;
- ``net_in_out``: ``monai.bundle.verify_net_in_out`` on ``network_def`` of ``inference.json`` (else ``train.json``) at
  full size, with the input and output of ``network_data_format`` (the pretraining bundle: its teacher's head logits,
  as ``StudentTeacher`` itself has no forward);
- ``export``: ``monai.bundle.ckpt_export`` (TorchScript by tracing) of ``network_def`` (pretraining: the exported
  ``backbone``) under the bundle's ``smoke.yaml`` (tiny widths, same layers: the check is about the layers, and
  the full sizes would take minutes on a CPU), reloaded and compared with the eager network on a new input;
- ``properties(train)`` / ``properties(inference)``: ``ConfigWorkflow(...).initialize()`` and ``check_properties()``
  with ``smoke.yaml`` on the synthetic sample set (built once into a temporary folder, or ``--dataset_dir``).

A bundle without ``network_def`` (DRR generation) gets ``skipped: no network`` for the network checks, and its
inference config is held to MONAI's meta properties only.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from unimiss_monai.release.package import REQUIRED, bundle_version
from unimiss_monai.utils.errors import failure_reason
from unimiss_monai.utils.json_files import read_json_object
from unimiss_monai.utils.repository import repository_bundles

__all__ = ["SCHEMA", "verify_bundle", "verify_bundles"]

SCHEMA = Path(__file__).resolve().parents[1] / "resources" / "meta_schema_20240725.json"
#: sha256 of that copy, so an edited or damaged schema fails the metadata check instead of passing every bundle
SCHEMA_SHA256 = "cd64aa8a5904426f6fc6855dabe46af8c742d5bad644b4e9cfb78ebad09ad678"


class Skip(Exception):
    """A check that does not apply to this bundle; the message says why."""


class _Bundle:
    """Paths and config facts of one bundle folder."""

    def __init__(self, path: Path, work: Path, dataset_dir: Path | None) -> None:
        self.path, self.name = path, path.name
        self.meta = path / "configs" / "metadata.json"
        self.logging = path / "configs" / "logging.conf"
        self.smoke = [str(path / "configs" / "smoke.yaml")] if (path / "configs" / "smoke.yaml").is_file() else []
        self.configs = {n: path / "configs" / f"{n}.json" for n in ("train", "inference") if (path / "configs" / f"{n}.json").is_file()}
        self.work, self.dataset_dir = work / self.name, dataset_dir
        self.work.mkdir(parents=True, exist_ok=True)

    def overrides(self) -> dict[str, Any]:
        # runs write nothing into the bundle and train from scratch (no sibling weights are looked up)
        return {"bundle_root": str(self.work), "output_dir": str(self.work / "out"), "pretrained_path": None,
                "dataset_dir": str(self.dataset_dir or self.work / "no_data")}

    def json_object(self, path: Path) -> dict[str, Any]:
        """The JSON object ``path`` holds; ``ValueError`` naming the file (as under the bundle) and what is wrong, where
        MONAI's readers would fail with a bare ``JSONDecodeError`` or ``'list' object has no attribute 'get'``."""
        return read_json_object(path, path.relative_to(self.path).as_posix(), "fix it, or restore it from the release")

    def metadata(self) -> dict[str, Any]:
        return self.json_object(self.meta)

    def has_network(self, config: Path) -> bool:
        return "network_def" in self.json_object(config)

    def main_config(self) -> Path:
        return self.configs.get("inference", self.configs.get("train"))


def _check_files(b: _Bundle) -> str:
    missing = [r for r in REQUIRED if not (b.path / r).is_file()]
    if not b.configs:
        missing.append("configs/train.json or configs/inference.json")
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    return f"{len(REQUIRED)} required files, configs {', '.join(sorted(b.configs))}"


def _check_metadata(b: _Bundle) -> str:
    from monai.bundle import verify_metadata

    url = b.metadata().get("schema", "")
    if not isinstance(url, str) or not url.endswith("/" + SCHEMA.name):
        raise ValueError(f"schema {url!r} is not {SCHEMA.name}, the copy shipped in unimiss_monai/resources")
    # the file exists, so MONAI's download_url keeps it and nothing is fetched
    verify_metadata(meta_file=str(b.meta), filepath=str(SCHEMA), create_dir=False, hash_val=SCHEMA_SHA256,
                    hash_type="sha256")
    return f"valid against {SCHEMA.name}"


def _check_changelog(b: _Bundle) -> str:
    version, _ = bundle_version(b.path)
    return f"version {version} in changelog"


def _net_args(b: _Bundle, config: Path) -> tuple[str, dict]:
    text = b.json_object(config)["network_def"]
    if isinstance(text, dict) and str(text.get("_target_", "")).endswith("StudentTeacher"):
        return "_verify_net_", {"_verify_net_": "$unimiss_monai.networks.nets.student_teacher.TeacherLogits(@network_def)"}
    return "network_def", {}


def _check_net_in_out(b: _Bundle) -> str:
    from monai.bundle import verify_net_in_out

    config = b.main_config()
    if not b.has_network(config):
        raise Skip("no network")
    meta = b.metadata()  # a malformed metadata.json is named in one line before MONAI reads it
    net_id, extra = _net_args(b, config)
    verify_net_in_out(net_id=net_id, meta_file=str(b.meta), config_file=str(config), device="cpu",
                      **b.overrides(), **extra)
    fmt = meta["network_data_format"]
    shape = fmt["inputs"]["image"]["spatial_shape"]
    return f"{config.name}: input {fmt['inputs']['image']['num_channels']}x{shape} -> {fmt['outputs']['pred']['num_channels']} channels"


def _outputs(y) -> list[torch.Tensor]:
    if isinstance(y, torch.Tensor):
        return [y]
    return [t for item in y for t in _outputs(item)] if isinstance(y, (tuple, list)) else []


def _check_export(b: _Bundle) -> str:
    from monai.bundle import ckpt_export

    config = b.configs.get("train", b.main_config())
    if not b.has_network(config):
        raise Skip("no network")
    b.metadata()  # a malformed metadata.json is named in one line before MONAI reads it
    files = [str(config), *b.smoke]
    parser = _parser(files, b)
    net_id = "backbone" if _net_args(b, config)[0] != "network_def" else "network_def"
    net = parser.get_parsed_content(net_id).eval()
    size_id = next((k for k in ("roi_size", "spatial_size", "ct_roi") if k in parser), None)
    if size_id is None:
        raise ValueError(f"no roi_size/spatial_size/ct_roi in {', '.join(Path(f).name for f in files)} to trace at")
    channels = 1 if net_id == "backbone" else parser["_meta_#network_data_format#inputs#image#num_channels"]
    shape = [1, int(channels), *(int(s) for s in parser.get_parsed_content(size_id))]
    ckpt, ts_path = b.work / "export_ckpt.pt", b.work / "model.ts"
    torch.save({"model": net.state_dict()}, ckpt)
    with warnings.catch_warnings():
        # tracing warns about every Python-side shape computation; the comparison on a new input below is the check
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        ckpt_export(net_id=net_id, filepath=str(ts_path), ckpt_file=str(ckpt), meta_file=str(b.meta), config_file=files,
                    key_in_ckpt="model", use_trace=True, input_shape=shape, **b.overrides())
    scripted = torch.jit.load(str(ts_path), map_location="cpu")
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1))  # not the tracing input
    with torch.no_grad():
        ours, theirs = _outputs(net(x)), _outputs(scripted(x))
    if len(ours) != len(theirs) or not ours:
        raise ValueError(f"the traced model returns {len(theirs)} tensors, the network {len(ours)}")
    err = max(float((a - c).abs().max()) for a, c in zip(ours, theirs))
    if err > 1e-4:
        raise ValueError(f"the traced model differs from the network by {err:.2e} on a new input")
    what = "backbone" if net_id == "backbone" else "network_def"
    return f"TorchScript (trace) of {what} at {shape} under smoke.yaml, max |diff| {err:.1e}"


def _check_properties(b: _Bundle, workflow: str) -> str:
    from monai.bundle import ConfigWorkflow

    config = b.configs.get(workflow)
    if config is None:
        raise Skip(f"no {workflow}.json")
    files = [str(config), *b.smoke]
    meta_only = not b.has_network(config)
    b.metadata()  # a malformed metadata.json is named in one line before MONAI reads it
    if workflow == "inference" and not meta_only:
        # inference loads its trained weights (ckpt_path, or ckpt_dir/model.pt) at start: give it the network's own
        parser = _parser(files, b)
        weights = Path(parser.get_parsed_content("ckpt_path") if "ckpt_path" in parser
                       else Path(parser.get_parsed_content("ckpt_dir")) / "model.pt")
        weights.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": parser.get_parsed_content("network_def").state_dict()}, weights)
    wf = ConfigWorkflow(config_file=files, meta_file=str(b.meta), logging_file=str(b.logging),
                        workflow_type=None if meta_only else workflow, **b.overrides())
    wf.initialize()
    missing = wf.check_properties()
    if missing:
        raise ValueError(f"missing or wrong properties: {missing}")
    return "meta properties only (no network)" if meta_only else f"{config.name}{' + smoke.yaml' if b.smoke else ''}: all properties"


def _parser(files: list[str], b: _Bundle):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(files)
    parser.read_meta(str(b.meta))
    parser.update(b.overrides())
    return parser


CHECKS: list[tuple[str, Callable[[_Bundle], str]]] = [
    ("files", _check_files),
    ("metadata", _check_metadata),
    ("changelog", _check_changelog),
    ("net_in_out", _check_net_in_out),
    ("export", _check_export),
    ("properties(train)", lambda b: _check_properties(b, "train")),
    ("properties(inference)", lambda b: _check_properties(b, "inference")),
]


def verify_bundle(path: Path, work: Path, dataset_dir: Path | None, report: Callable[[str], None] = print) -> list[dict]:
    """Run every check on one bundle folder; returns ``[{"bundle", "check", "status", "detail", "seconds"}]`` with
    status ``ok``, ``skipped`` or ``FAILED``, and reports one line per check."""
    b = _Bundle(path, work, dataset_dir)
    results = []
    for check, fn in CHECKS:
        start = time.perf_counter()
        logging.disable(logging.INFO)  # MONAI logs every argument of its checks; the one line per check says it
        try:
            status, detail = "ok", fn(b)
        except Skip as why:
            status, detail = "skipped", str(why)
        except Exception as err:  # noqa: BLE001 - every failure is reported, and the other checks still run
            status, detail = "FAILED", failure_reason(err)
        finally:
            logging.disable(logging.NOTSET)
        seconds = time.perf_counter() - start
        results.append({"bundle": b.name, "check": check, "status": status, "detail": detail, "seconds": seconds})
        report(f"{b.name:28s} {check:22s} {status}: {detail} ({seconds:.1f} s)")
    return results


def _sample_set(root: Path) -> Path:
    out = root / "samples"
    cmd = [sys.executable, "-m", "unimiss_monai", "samples", "--out", str(out), "--synthetic", "true"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or [f"exit status {done.returncode}"]
        # the error's own line, not the hint after it on how to see its traceback
        said = next((line for line in reversed(lines) if line.startswith("error: ")), lines[-1])
        raise ValueError(f"verify-bundles: building the synthetic sample set failed: {said}")
    return out


def verify_bundles(*bundles: str, dataset_dir: str | None = None) -> dict[str, Any]:
    """Command ``verify-bundles``: the model-zoo checks (see the module docstring) for each bundle folder given, or
    every folder of the repository's ``bundles/``. One line per bundle and check; exits with status 1 when a check
    fails.

    Returns:
        ``{"ok", "skipped", "FAILED", "seconds"}`` (the per-check results: :func:`verify_bundle`).

    Args:
        bundles: bundle folders (default: all of ``bundles/``).
        dataset_dir: a ``python -m unimiss_monai samples`` output for the property checks (default: the synthetic
            set, built into a temporary folder, about 15 s).
    """
    torch.manual_seed(0)
    paths = [Path(p) for p in bundles]
    if not paths:
        paths = repository_bundles("verify-bundles", "the bundle folders to check (verify-bundles DIR ...)")
    for p in paths:
        if not p.exists():
            raise ValueError(f"verify-bundles: {p} does not exist; pass a bundle folder (bundles/<name>)")
        if not (p / "configs").is_dir():
            what = "a file" if p.is_file() else "a folder without configs/"
            raise ValueError(f"verify-bundles: {p} is {what}, not a bundle folder; pass one (bundles/<name>)")
    if dataset_dir and not Path(dataset_dir).is_dir():  # a bundle whose checks read no data would pass without it
        raise ValueError(f"verify-bundles: --dataset_dir {dataset_dir} is no folder; pass a `python -m unimiss_monai "
                         "samples` output, or leave it out to check on the synthetic set")
    start = time.perf_counter()
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="verify-bundles-") as tmp:
        data = Path(dataset_dir) if dataset_dir else _sample_set(Path(tmp))
        for p in paths:
            results += verify_bundle(p, Path(tmp), data)
    failed = [r for r in results if r["status"] == "FAILED"]
    counts = {s: sum(r["status"] == s for r in results) for s in ("ok", "skipped", "FAILED")}
    print(f"verify-bundles: {len(paths)} bundles, {len(results)} checks: {counts['ok']} ok, {counts['skipped']} skipped, "
          f"{counts['FAILED']} failed ({time.perf_counter() - start:.0f} s)", flush=True)
    if failed:
        names = ", ".join(f"{r['bundle']} {r['check']}" for r in failed[:4])
        raise ValueError(f"verify-bundles: {len(failed)} check(s) failed: {names}{' ...' if len(failed) > 4 else ''}")
    return {**counts, "seconds": round(time.perf_counter() - start, 1)}

