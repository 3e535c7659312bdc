"""A file torch cannot read is refused in one line that names it, says what it is not (a file torch.save wrote) and
what it seems to be, and what to pass instead; torch's internal reason (a pickle opcode such as ``101``, a miniz
code, ``pop from empty list``) is not the message."""

from __future__ import annotations

import re

import pytest
import torch

from unimiss_monai.utils import UnreadableCheckpointError, UnsafeCheckpointError, load_torch_file

FIX = "; pass a .pt/.pth checkpoint (e.g. the models/model.pt of a run)"


@pytest.mark.parametrize("text,seen", [
    ("hello\n", "it holds text ('hello')"),  # torch: KeyError 101, the code of 'e'
    ("epoch 10, loss 0.3\n", "it holds text ('epoch 10, loss 0.3')"),  # torch: pop from empty list
    ("not a checkpoint\n", "it holds text ('not a checkpoint')"),  # torch: a weights-only refusal of an opcode
    ("\n  " + "x" * 60 + "\nmore\n", f"it holds text ('{'x' * 40}...')"),
    ("", "it is empty"),  # torch: EOFError
])
def test_a_text_file_is_named_with_what_it_is_and_the_fix(tmp_path, text, seen):
    path = tmp_path / "model.pt"
    path.write_text(text)
    with pytest.raises(UnreadableCheckpointError) as err:
        load_torch_file(path, "pretrained checkpoint")
    assert str(err.value) == f"pretrained checkpoint {str(path)!r} is not a file written by torch.save: {seen}{FIX}"


def test_a_git_lfs_pointer_is_told_to_be_fetched(tmp_path):
    path = tmp_path / "model.pt"
    path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 1234\n")
    with pytest.raises(UnreadableCheckpointError, match=r"is not a file written by torch\.save: it is a Git LFS "
                                                        r"pointer, not the weights it stands for; fetch the weights "
                                                        r"with git lfs pull"):
        load_torch_file(path)


def test_damaged_torch_files_say_so_without_torch_internals(tmp_path):
    torch.save({"w": torch.arange(100.0)}, tmp_path / "whole.pt")
    data = (tmp_path / "whole.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableCheckpointError) as err:
        load_torch_file(tmp_path / "cut.pt")
    assert str(err.value) == (f"checkpoint {str(tmp_path / 'cut.pt')!r} is not a file written by torch.save: it is a "
                              f"zip archive that does not read back whole (truncated or damaged){FIX}")
    assert not re.search(r"miniz|PytorchStreamReader|\(\d+\)", str(err.value))
    # a file that is there and readable keeps loading as before; a class it may not hold is still a refusal
    assert torch.equal(load_torch_file(tmp_path / "whole.pt")["w"], torch.arange(100.0))
    torch.save({"fn": torch.nn.Linear(1, 1)}, tmp_path / "module.pt")
    with pytest.raises(UnsafeCheckpointError, match="torch.nn.modules.linear.Linear, which is refused"):
        load_torch_file(tmp_path / "module.pt")


def test_a_bundle_zip_or_another_archive_is_named_as_what_it_is(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "unimiss_pretraining.zip", "w") as z:  # what monai.bundle download leaves beside
        z.writestr("unimiss_pretraining/configs/metadata.json", "{}")
        z.writestr("unimiss_pretraining/models/model.pt", b"")
    with pytest.raises(UnreadableCheckpointError) as err:
        load_torch_file(tmp_path / "unimiss_pretraining.zip", "pretrained checkpoint")
    assert str(err.value).endswith("is not a file written by torch.save: it is a bundle archive (it holds "
                                   "unimiss_pretraining/configs/metadata.json); pass the bundle folder it unpacks to (the "
                                   "one monai.bundle download writes beside it), or that folder's models/model.pt")
    with zipfile.ZipFile(tmp_path / "notes.zip", "w") as z:
        z.writestr("notes.txt", "x")
    with pytest.raises(UnreadableCheckpointError, match=r"it is a zip archive, but not one torch\.save wrote; pass a "):
        load_torch_file(tmp_path / "notes.zip")
