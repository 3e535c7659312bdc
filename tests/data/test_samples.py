"""The ``samples`` command: manifest contract, quick second run, failures isolated per data set."""

from __future__ import annotations

import importlib
import json
import sys
import types

import numpy as np
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
        samples(str(tmp_path / "new" / "samples"), only="nope")
    assert not (tmp_path / "new").exists()  # refused before anything is made
    with pytest.raises(FileNotFoundError, match="samples --out"):
        find_dataset(tmp_path / "absent", "good")
    # a plain folder is the user's own data set
    assert find_dataset(tmp_path, "anything") == str(tmp_path)


def test_a_mistyped_dataset_dir_is_pointed_at_the_folder_beside_it(tmp_path, monkeypatch):
    """A name one letter off an existing folder (``sample`` for ``samples``) is offered that folder, as typed, before
    the command that would build a second sample set; a name like nothing there gets the command alone."""
    (tmp_path / "samples").mkdir()
    (tmp_path / "bundle").mkdir()
    monkeypatch.chdir(tmp_path / "bundle")
    with pytest.raises(FileNotFoundError) as err:
        find_dataset("../sample", "good")
    assert str(err.value) == ("dataset_dir '../sample' does not exist; did you mean ../samples? If not, create it with "
                              "`python -m unimiss_monai samples --out ../sample` or point --dataset_dir at your data")
    with pytest.raises(FileNotFoundError) as err:
        find_dataset("../scans", "good")
    assert str(err.value) == ("dataset_dir '../scans' does not exist; create it with `python -m unimiss_monai samples "
                              "--out ../scans` or point --dataset_dir at your data")
    with pytest.raises(FileNotFoundError, match="^dataset_dir '../absent/sample' does not exist; create it"):
        find_dataset("../absent/sample", "good")  # no folder to look in


def test_pretraining_set_has_a_labelled_probe(tmp_path):
    import nibabel as nib

    from unimiss_monai.data.phantom import make_ct_phantom

    root = samples(str(tmp_path), synthetic=True, only="pretraining")
    datalist = json.loads((tmp_path / "pretraining" / "datalist.json").read_text())
    probe = datalist["probe"]
    assert {item["label"] for item in probe} == {"lung", "heart", "spine"}
    # each crop is cut from a phantom and keeps its world position: its centre voxel lies in the labelled organ
    phantom = make_ct_phantom(shape=(40, 40, 24), spacing=(6.0, 6.0, 6.0), seed=0)
    names = {v: k for k, v in phantom.label_names.items()}
    checked, centred = [], 0
    for item in (i for i in probe if i["image"].startswith("probe/phantom0_")):
        img = nib.load(f"{root}/pretraining/{item['image']}")
        assert img.shape == (12, 12, 8)
        origin = np.linalg.solve(phantom.affine, img.affine[:, 3])[:3].round().astype(int)
        box = tuple(slice(o, o + n) for o, n in zip(origin, img.shape))
        np.testing.assert_array_equal(img.get_fdata(), phantom.hu[box])
        values = [names[n] for n in names if item["label"] in n]
        assert values, item
        # a crop that would pass the volume's edge is shifted inside it: its centre may then leave the organ
        if (origin > 0).all() and (origin + img.shape < phantom.labels.shape).all():
            centre = tuple(origin + np.asarray(img.shape) // 2)
            assert phantom.labels[centre] in values, (item, centre)
            centred += 1
        assert np.isin(phantom.labels[box], values).any(), item
        checked.append(item["label"])
    assert centred and set(checked) == {"lung", "heart", "spine"}, checked


def test_progress_is_said_and_a_users_mistake_gets_no_traceback(tmp_path, fake_builders, monkeypatch, capsys, caplog):
    def mine(out_dir, synthetic):
        raise FileExistsError(f"{out_dir / 'good'} is a folder of yours; pass --out elsewhere")

    monkeypatch.setattr(sys.modules["fake_sample_sets"], "bad", mine)
    with caplog.at_level("ERROR", logger=samples_module.logger.name), pytest.raises(RuntimeError, match="folder of yours"):
        samples(str(tmp_path), synthetic=True)
    out = capsys.readouterr().out
    assert "[samples] bad: building (1 of 2)" in out and "[samples] good: building (2 of 2)" in out
    assert f"[samples] bad: FAILED: {tmp_path / 'good'} is a folder of yours" in out  # its line, with no type
    assert not [r for r in caplog.records if r.exc_info]  # the reason, once per place, without a traceback
    # a bug still leaves its traceback in the log
    with caplog.at_level("ERROR", logger=samples_module.logger.name), pytest.raises(RuntimeError):
        monkeypatch.setattr(sys.modules["fake_sample_sets"], "bad", lambda out_dir, synthetic: [][1])
        samples(str(tmp_path), synthetic=True, only="bad")
    assert [r for r in caplog.records if r.exc_info]


@pytest.mark.parametrize("text, problem", [('{"a": 1}', "no 'datasets' object"), ("nope", "not valid JSON")])
def test_a_samples_json_the_command_did_not_write_is_named_and_kept(tmp_path, fake_builders, text, problem):
    """A file of that name that is not a manifest (no ``datasets``, or not JSON) stops the command in one line naming
    it and the fix, before any data set is built; the file is left as it was."""
    (tmp_path / "samples.json").write_text(text)
    with pytest.raises(ValueError) as err:
        samples(str(tmp_path), synthetic=True, only="good")
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'samples.json'} is not a samples manifest: {problem}") and "\n" not in message
    assert "move it away or choose another --out" in message
    assert fake_builders == [] and (tmp_path / "samples.json").read_text() == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples.json"]
    with pytest.raises(ValueError, match="is not a samples manifest.*point --dataset_dir at a samples folder"):
        find_dataset(tmp_path, "good")
