"""Every ``ckpt_export`` command in a bundle's docs names an input its network takes: the documented
``--input_shape`` is run through the network the documented ``--config_file`` builds (full size, random weights), as
tracing would. A wrong channel count or size fails here, not on a user's first export."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

ROOT = Path(__file__).resolve().parents[2]
EXPORT = re.compile(r"^python -m monai\.bundle ckpt_export .*$", re.M)


def _commands() -> list[tuple[str, str]]:
    found = []
    for page in sorted(ROOT.glob("bundles/*/docs/README.md")):
        found += [(page.parts[-3], line) for line in EXPORT.findall(page.read_text(encoding="utf-8"))]
    return found


def _option(args: list[str], name: str) -> str:
    return args[args.index(f"--{name}") + 1]


def test_every_fine_tune_bundle_documents_an_export():
    assert sorted({bundle for bundle, _ in _commands()}) == [
        "unimiss_ct_classification", "unimiss_ct_segmentation", "unimiss_cxr_classification", "unimiss_cxr_segmentation"]


@pytest.mark.parametrize("bundle, command", _commands(), ids=[b for b, _ in _commands()])
def test_the_documented_input_shape_fits_the_network(bundle, command):
    args = shlex.split(command)
    configs = _option(args, "config_file")
    files = ast.literal_eval(configs) if configs.startswith("[") else [configs]
    root = ROOT / "bundles" / bundle
    parser = ConfigParser(ConfigParser.load_config_files([str(root / f) for f in files]))
    parser["bundle_root"] = str(root)
    network = parser.get_parsed_content(_option(args, "net_id") if "--net_id" in args else args[4], instantiate=True)
    shape = ast.literal_eval(_option(args, "input_shape"))
    torch.manual_seed(0)
    with torch.no_grad():
        out = network.eval()(torch.rand(shape))
    assert torch.isfinite(out).all() and out.shape[0] == shape[0]
