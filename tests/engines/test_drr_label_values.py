"""DRRGenerator: a label map whose values would vanish from (or flood) the projections fails its case with one line
naming the label map (and its names file) and the fix, and a bad label names file fails with the file, the fault and
the expected format; the good CT beside them is rendered. Each of these used to render ok with rc 0: values the names
file left out, negative values and a CT passed as its own label map were dropped or became hundreds of structures."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from drr_phantoms import SHAPE, SMALL, SPACING
from drr_phantoms import phantom_case as _phantom_case

from unimiss_monai.data import make_ct_phantom, phantom_affine, save_nifti
from unimiss_monai.data.ct_inputs import MAX_LABEL_VALUES, label_channels, read_label_names
from unimiss_monai.data.ct_io import CTInputError
from unimiss_monai.engines import DRRGenerationError, DRRGenerator

JSON_FORM = 'expected a JSON object of label value -> structure name, e.g. {"1": "liver", "2": "spleen"}'
CSV_FORM = "expected a CSV with columns 'structure' and 'id'"


def _nonzero_values(path) -> list[int]:
    """The sorted distinct nonzero values stored in the NIfTI file ``path``."""
    values = np.unique(np.asanyarray(nib.load(path).dataobj))
    return [int(v) for v in values if v != 0]


def _failures(data, out, failed: int, total: int) -> dict[str, str]:
    """Run over ``data``, which must fail ``failed`` of ``total`` CTs and render the CT ``good`` alone (2 views);
    returns case name -> its one-line error."""
    with pytest.raises(DRRGenerationError) as info:
        DRRGenerator(data, out, **SMALL).run()
    assert str(info.value).startswith(f"{failed} of {total} CT(s) failed")
    assert sorted(p.name for p in out.iterdir()) == ["datalist.json", "good"]  # nothing written for a failed CT
    summary = json.loads((out / "datalist.json").read_text())
    assert len(summary["testing"]) == 2 and len(summary["failures"]) == failed
    errors = {f["name"]: f["error"] for f in summary["failures"]}
    assert all("\n" not in e for e in errors.values())
    return errors


def _good_case(data):
    """The good CT, its names file naming one value more than its map holds: an empty channel, not a failure."""
    p = _phantom_case(data, "good")
    names = {**{str(k): v for k, v in p.label_names.items()}, "7": "pacemaker"}
    (data / "good_labels.json").write_text(json.dumps(names))
    return p


def _assert_good_rendered(out, channels: int = 7):
    labels = nib.load(out / "good" / "good_AP_labels.nii.gz").get_fdata()
    names = json.loads((out / "good" / "good_labels.json").read_text())
    assert labels.shape == (32, 40, channels) and len(names) == channels
    assert np.all(labels[..., :6].max(axis=(0, 1)) > 0)


def test_values_the_names_file_does_not_name_fail_the_case(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    _good_case(data)
    partial = _phantom_case(data, "partial")
    (data / "partial_labels.json").write_text(json.dumps({"1": "body"}))  # values 2-6 used to vanish
    scaled = _phantom_case(data, "scaled")  # every named channel used to be empty, the real values dropped
    save_nifti(scaled.labels.astype(np.int32) * 100000, scaled.affine, data / "scaled_labels.nii.gz")
    errors = _failures(data, out, 2, 3)
    fix = ("which would vanish from the projections; name them there, pass a names file that names every value, or "
           "map them to 0 if they mark voxels to ignore")
    assert errors["partial"] == (f"{data / 'partial.nii.gz'}: {data / 'partial_labels.nii.gz'}: label map holds 5 "
                                 f"value(s) that {data / 'partial_labels.json'} does not name (2, 3, 4, 5, 6), {fix}")
    assert (f"{data / 'scaled_labels.nii.gz'}: label map holds 6 value(s) that {data / 'scaled_labels.json'} does not "
            f"name (100000, 200000, 300000, 400000, 500000, ... (6 in all)), {fix}") in errors["scaled"]
    _assert_good_rendered(out)
    assert partial.label_names[2] == "lung_left"  # the phantom does hold the values the test leaves unnamed


def test_negative_label_values_fail_the_case(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    _good_case(data)
    for name, named in (("named", True), ("unnamed", False)):
        p = _phantom_case(data, name)
        labels = p.labels.astype(np.int16)
        labels[:4] = np.where(labels[:4] == 0, -1, labels[:4])  # an "ignore" value around the body
        labels[-2:, -2:, -2:] = -5
        save_nifti(labels, p.affine, data / f"{name}_labels.nii.gz")
        if not named:  # the label_<value> channels of a map without names used to skip them too
            (data / f"{name}_labels.json").unlink()
    errors = _failures(data, out, 2, 3)
    for name in ("named", "unnamed"):
        assert (f"{data / f'{name}_labels.nii.gz'}: label map holds negative values (-5, -1); label values are 0 "
                "(background) and positive whole numbers: map them to 0 (voxels to ignore, padding) or to positive "
                "values") in errors[name]
    _assert_good_rendered(out)


def test_a_ct_given_as_its_own_label_map_fails_the_case(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    _good_case(data)
    # a CT stored as whole HU, as most are: as its own label map it used to become 142 "structures" label_<HU>
    ct = make_ct_phantom(SHAPE, affine=phantom_affine(SPACING, SHAPE))
    save_nifti(np.rint(ct.hu).astype(np.int16), ct.affine, data / "ct.nii.gz")
    # a CT stored without its rescale intercept (air at 0) holds no negative value, but over a thousand distinct ones
    noisy = make_ct_phantom(SHAPE, affine=phantom_affine(SPACING, SHAPE), noise_hu=300)
    save_nifti(np.rint(noisy.hu), noisy.affine, data / "offset.nii.gz")
    save_nifti((np.rint(noisy.hu) + 1024).astype(np.uint16), noisy.affine, data / "offset_hu.nii.gz")
    entries = [{"image": "good.nii.gz", "label": "good_labels.nii.gz", "label_names": "good_labels.json"},
               {"image": "ct.nii.gz", "label": "ct.nii.gz"}, {"image": "offset.nii.gz", "label": "offset_hu.nii.gz"}]
    (data / "datalist.json").write_text(json.dumps({"testing": entries}))
    errors = _failures(data, out, 2, 3)
    looks = ("it does not look like a label map (is it the CT itself?): pair the CT with its segmentation (0 "
             "background, 1, 2, ... one value per structure)")
    # the counts and ends the message names, from the distinct nonzero values stored in each file
    ct_values, offset_values = (_nonzero_values(data / name) for name in ("ct.nii.gz", "offset_hu.nii.gz"))
    assert ct_values[0] <= -1000 and 50 < len(ct_values) <= MAX_LABEL_VALUES < len(offset_values)
    assert errors["ct"] == (f"{data / 'ct.nii.gz'}: holds {len(ct_values)} distinct values from {ct_values[0]} to "
                            f"{ct_values[-1]}, down to {ct_values[0]}, air in HU; {looks}")
    assert (f"{data / 'offset_hu.nii.gz'}: holds {len(offset_values)} distinct values from {offset_values[0]} to "
            f"{offset_values[-1]}, more than any segmentation has (at most 1000); {looks}") in errors["offset"]
    _assert_good_rendered(out)


def test_the_bound_on_distinct_values_lies_above_real_segmentations(tmp_path):
    labels = tmp_path / "seg.nii.gz"
    # TotalSegmentator's 117 classes, an "ignore" value, and an atlas of MAX_LABEL_VALUES structures all pass ...
    assert list(label_channels(labels, range(118), {}, None)) == list(range(1, 118))
    assert len(label_channels(labels, range(MAX_LABEL_VALUES + 1), {}, None)) == MAX_LABEL_VALUES == 1000
    with pytest.raises(CTInputError, match=r"negative values \(-100\)"):
        label_channels(labels, [-100, 0, 1], {}, None)
    # ... one more value does not, nor does a map holding air
    with pytest.raises(CTInputError, match=r"seg.nii.gz: holds 1001 distinct values from 1 to 1001, more than any"):
        label_channels(labels, range(MAX_LABEL_VALUES + 2), {}, None)
    with pytest.raises(CTInputError, match=r"holds 51 distinct values from -1000 to 5, down to -1000, air in HU"):
        label_channels(labels, [-1000, *range(-49, 0), 0, 5], {}, None)
    # a few values padded with the CT's fill value are a padded label map, told as holding negative values
    with pytest.raises(CTInputError, match=r"label map holds negative values \(-1024\); .* map them to 0"):
        label_channels(labels, [-1024, 0, 1, 2, 3], {}, None)


@pytest.mark.parametrize("suffix, text, fault", [
    (".json", '["body", "lung_left"]', f"holds a JSON array, not an object; {JSON_FORM}"),
    (".json", '{"abc": "body"}', f"key 'abc' is not a label value (a whole number); {JSON_FORM}"),
    (".json", "{1: 'body'}", f"not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 "
                             f"(char 1)); {JSON_FORM}"),
    (".json", "{}", f"names no label value; {JSON_FORM}, or a CSV with columns 'structure' and 'id'"),
    (".json", '{"1": {"name": "body"}}', f'label \'1\' is named {{"name": "body"}}, not a name; {JSON_FORM}'),
    (".json", '{"-1": "ignore", "1": "body"}', "names negative label value(s) -1; label values are 0 (background)"),
    (".csv", "structure,id\nbody,abc\n", f"id 'abc' of structure 'body' is not a whole number; {CSV_FORM}"),
    (".csv", "name,value\nbody,1\n", CSV_FORM),
    (".csv", b"\xff\xfe\x00\x01", "not a readable CSV ("),
], ids=["json-array", "json-key", "json-syntax", "json-empty", "json-nested", "json-negative", "csv-id", "csv-columns",
        "csv-binary"])
def test_a_bad_label_names_file_names_itself_and_the_format(tmp_path, suffix, text, fault):
    path = tmp_path / f"names{suffix}"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(CTInputError) as info:
        read_label_names(path)
    assert str(info.value).startswith(f"{path}: {fault}") and "\n" not in str(info.value)
    if suffix == ".csv":
        assert str(info.value).endswith("(one row per label value, e.g. 'liver,5')")
    with pytest.raises(CTInputError, match=r"absent.json: cannot read this label names file \(No such file or "
                                           r"directory\); fix the path \(a datalist entry's 'label_names'\)"):
        read_label_names(tmp_path / "absent.json")


def test_bad_label_names_files_fail_their_cases_alone(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    _good_case(data)
    bad = {"array": '["body", "lung_left"]', "key": '{"abc": "body"}', "syntax": "{1: 'body'}"}
    for name, text in bad.items():
        _phantom_case(data, name)
        (data / f"{name}_labels.json").write_text(text)
    _phantom_case(data, "csv")
    (data / "csv_labels.json").unlink()
    (data / "csv_labels.csv").write_text("structure,id\nbody,1\nlungs,2-3\n")
    errors = _failures(data, out, 4, 5)
    for name, fault in (("array", "holds a JSON array, not an object"),
                        ("key", "key 'abc' is not a label value (a whole number)"),
                        ("syntax", "not valid JSON (Expecting property name enclosed in double quotes")):
        assert errors[name].startswith(f"{data / f'{name}.nii.gz'}: {data / f'{name}_labels.json'}: {fault}")
        assert errors[name].endswith(JSON_FORM)
    assert errors["csv"].startswith(f"{data / 'csv.nii.gz'}: {data / 'csv_labels.csv'}: id '2-3' of structure 'lungs' "
                                    f"is not a whole number; {CSV_FORM}")
    _assert_good_rendered(out)


def test_a_name_for_the_background_makes_no_channel(tmp_path):
    """MONAI's and nnU-Net's label files name 0 "background": what no structure covers is not projected as one (it
    used to become a channel holding the whole body's thickness)."""
    data, out = tmp_path / "data", tmp_path / "out"
    _good_case(data)
    names = json.loads((data / "good_labels.json").read_text())
    (data / "good_labels.json").write_text(json.dumps({"0": "background", **names}))
    DRRGenerator(data, out, **SMALL).run()
    _assert_good_rendered(out)  # the 7 structures, no eighth channel
    assert "background" not in json.loads((out / "good" / "good_labels.json").read_text()).values()
    only = tmp_path / "only.json"
    only.write_text('{"0": "background"}')
    with pytest.raises(CTInputError, match=r"only.json: names only the background \(0\), no structure to project; "
                                           r"name the structures' values in only.json or remove it$"):
        read_label_names(only)


@pytest.mark.parametrize("name, text", [
    ("v1.json", '{"0": "background", "1": "liver", "2": "spleen"}'),
    ("v2.json", '{"background": 0, "liver": 1, "spleen": 2}'),  # nnU-Net v2's "labels": name -> value
    ("dataset.json", '{"name": "Task03", "labels": {"0": "background", "1": "liver", "2": "spleen"}}'),
    ("dataset_v2.json", '{"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "spleen": 2}}'),
    ("excel.csv", "\ufeffstructure,id\nliver,1\nspleen,2\n"),  # a spreadsheet's byte-order mark
    ("spaced.csv", "structure, id\nliver, 1\nspleen, 2\n"),
], ids=["json-value-name", "json-name-value", "msd-dataset", "nnunet-v2-dataset", "csv-bom", "csv-spaces"])
def test_the_label_names_files_people_have_are_read(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    assert read_label_names(path) == {1: "liver", 2: "spleen"}


def test_a_name_to_value_file_naming_one_value_twice_is_refused(tmp_path):
    path = tmp_path / "names.json"
    path.write_text('{"liver": 1, "spleen": 1}')
    with pytest.raises(CTInputError, match=r"names.json: names one label value twice \(\{'liver': 1, 'spleen': 1\}\)"):
        read_label_names(path)


@pytest.mark.parametrize("name, text, fault", [
    ("names.json", '{"1": "lung", "2": "liver", "3": "lung"}',
     "gives the name 'lung' to label values 1, 3; each value is a structure of its own (a channel of its DRRs), so "
     "give each its own name in names.json, or give those voxels one value in the label map"),
    ("names.csv", "structure,id\nlung,2\nliver,2\nheart,3\n",
     "id 2 is given to both 'lung' and 'liver'; give each label value one row"),
], ids=["json-one-name-twice", "csv-one-value-twice"])
def test_a_name_given_twice_or_a_value_named_twice_is_refused(tmp_path, name, text, fault):
    """Two values named "lung" made two channels named "lung", and which was which was lost; a CSV giving value 2
    two rows kept the later name, and the label map's value of the other went unnamed."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(CTInputError) as info:
        read_label_names(path)
    assert str(info.value) == f"{path}: {fault}"
