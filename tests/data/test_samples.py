"""The ``samples`` command: manifest contract, quick second run, failures isolated per data set."""

from __future__ import annotations

import importlib
import json
import sys
import types

import pytest

from unimiss_monai.data import find_dataset, samples
samples_module = importlib.import_module("unimiss_monai.data.samples")


@pytest.fixture
def fake_builders(monkeypatch):
    calls = []

    def good(out_dir, synthetic):
        calls.append("good")
        (out_dir / "good").mkdir(exist_ok=True)
        (out_dir / "good" / "datalist.json").write_text("{}")
        return {"path": "good", "datalist": "good/datalist.json", "source": "synthetic"}

    def bad(out_dir, synthetic):
        calls.append("bad")
        raise OSError("disk on fire")

    module = types.ModuleType("fake_sample_sets")
    module.good, module.bad = good, bad
    monkeypatch.setitem(sys.modules, "fake_sample_sets", module)
    monkeypatch.setattr(samples_module, "BUILDERS", {"bad": "fake_sample_sets:bad", "good": "fake_sample_sets:good"})
    return calls


def test_second_run_reuses_and_overwrite_rebuilds(tmp_path, fake_builders):
    samples(str(tmp_path), synthetic=True, only="good")
    samples(str(tmp_path), synthetic=True, only="good")
    assert fake_builders == ["good"]
    samples(str(tmp_path), synthetic=True, only="good", overwrite=True)
    assert fake_builders == ["good", "good"]
    # a different data source is a different data set: rebuilt
    samples(str(tmp_path), synthetic=False, only="good")
    assert fake_builders == ["good"] * 3
    manifest = json.loads((tmp_path / "samples.json").read_text())
    assert manifest["datasets"]["good"]["synthetic"] is False
    assert find_dataset(tmp_path, "good") == str(tmp_path / "good")


def test_failing_builder_does_not_stop_the_others(tmp_path, fake_builders):
    with pytest.raises(RuntimeError, match="bad: OSError: disk on fire"):
        samples(str(tmp_path), synthetic=True)
    assert fake_builders == ["bad", "good"]
    assert (tmp_path / "good" / "datalist.json").is_file()
    with pytest.raises(KeyError, match="no data set 'bad'"):
        find_dataset(tmp_path, "bad")


def test_unknown_name_and_missing_dir(tmp_path, fake_builders):
    with pytest.raises(ValueError, match="unknown data set"):
        samples(str(tmp_path), only="nope")
    with pytest.raises(FileNotFoundError, match="samples --out"):
        find_dataset(tmp_path / "absent", "good")
    # a plain folder is the user's own data set
    assert find_dataset(tmp_path, "anything") == str(tmp_path)
