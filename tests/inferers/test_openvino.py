"""``OpenVINOInferer``: its settings, what it does without OpenVINO, and (in processes of their own, so that
OpenVINO's native libraries never load into the suite's process) the cases in ``openvino_cases.py`` and a check that
OpenVINO sends and writes nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from monai.inferers import SlidingWindowInferer
from openvino_cases import SW, _Net, _volume

from unimiss_monai.inferers import openvino as ov_inferer
from unimiss_monai.inferers.openvino import OpenVINOInferer, openvino_available

needs_openvino = pytest.mark.skipif(not openvino_available(), reason="openvino is not installed (extra [openvino])")
REPO = Path(__file__).resolve().parents[2]


@needs_openvino
def test_openvino_cases_in_a_process_of_their_own():
    """``openvino_cases.py``: equal outputs, one compile per network and another after new weights, a two-output
    network and a wrong conversion refused, the weights read once per call; every case there ran and passed."""
    cases = Path(__file__).with_name("openvino_cases.py")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(cases)], cwd=REPO,
                          capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    cases_there = len(re.findall(r"^def test_", cases.read_text(), flags=re.M))
    assert re.search(rf"\b{cases_there} passed\b", done.stdout), done.stdout[-2000:]


def test_disabled_is_the_inner_inferer():
    torch.manual_seed(0)
    net, x = _Net().eval(), _volume()
    sw = SlidingWindowInferer(**SW)
    with torch.inference_mode():
        assert torch.equal(OpenVINOInferer(sw, enabled=False)(x, net), sw(x, net))


@pytest.mark.parametrize("kwargs, message", [
    ({"precision": "f16"}, "precision must be one of"), ({"threads": 0}, "threads must be at least 1"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OpenVINOInferer(SlidingWindowInferer(8), enabled=False, **kwargs)


def test_missing_package_is_named_with_the_install_line(monkeypatch):
    # the pin of the package's [openvino] extra, which the message and the CT segmentation docs repeat
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    (pin,) = re.findall(r'^openvino = \["(openvino==[^"]+)"\]$', pyproject, re.MULTILINE)
    monkeypatch.setattr(ov_inferer, "openvino_available", lambda: False)
    with pytest.raises(ImportError, match=rf"`pip install {re.escape(pin)}` \(this package's \[openvino\] extra\)"):
        OpenVINOInferer(SlidingWindowInferer(8))
    docs = (Path(__file__).resolve().parents[2] / "bundles" / "unimiss_ct_segmentation" / "docs" / "README.md")
    docs = docs.read_text()
    assert set(re.findall(r"pip install (openvino\S*?)[`)]", docs)) == {pin}


@needs_openvino
def test_openvino_sends_and_writes_nothing(tmp_path):
    """OpenVINO's package sends usage events and writes a client id and counters to ~/intel unless told not to; a
    whole compile-and-infer through the inferer, in a fresh process with its home folder in tmp_path and no CI
    variable, leaves ~/intel unwritten, telemetry without consent, and CI as it found it (unset)."""
    script = """
import os, torch
from monai.inferers import SlidingWindowInferer
from unimiss_monai.inferers.openvino import OpenVINOInferer
net = torch.nn.Conv3d(1, 2, 3, padding=1).eval()
with torch.inference_mode():
    OpenVINOInferer(SlidingWindowInferer((8, 16, 16)))(torch.rand(1, 1, 8, 16, 16), net)
import openvino_telemetry
print("consent", openvino_telemetry.Telemetry().consent, "CI" in os.environ)
"""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL")}
    env.update(HOME=str(tmp_path), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-3:] == ["consent", "False", "False"], done.stdout
    assert not (tmp_path / "intel").exists()
