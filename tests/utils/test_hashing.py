"""sha256 of a datalist and the files it names: the identity of the data a study ran on."""

from __future__ import annotations

import hashlib
import json

from unimiss_monai.utils.hashing import sha256_datalist, sha256_file


def _datalist(folder, contents: dict[str, bytes]) -> str:
    for name, data in contents.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    path = folder / "datalist.json"
    path.write_text(json.dumps({"class_names": ["a", "b"],
                                "training": [{"image": "images/0.nii", "label": "a"},
                                             {"image": "images/1.nii", "label": ["labels/1.nii"]}],
                                "test": [{"image": "images/0.nii", "label": "b"}]}))
    return str(path)


def test_same_names_other_contents_give_another_digest(tmp_path):
    files = {"images/0.nii": b"zero", "images/1.nii": b"one", "labels/1.nii": b"mask"}
    first = sha256_datalist(_datalist(tmp_path / "a", files))
    assert first == sha256_datalist(_datalist(tmp_path / "b", files))  # where the folder lies does not count
    assert first != sha256_datalist(_datalist(tmp_path / "c", {**files, "labels/1.nii": b"other mask"}))
    assert first != sha256_datalist(_datalist(tmp_path / "d", {**files, "images/0.nii": b"zer0"}))


def test_sha256_file_is_the_sha256_of_the_bytes(tmp_path):
    path = tmp_path / "w.pt"
    path.write_bytes(b"x" * (3 << 20))
    assert sha256_file(path) == hashlib.sha256(b"x" * (3 << 20)).hexdigest()
