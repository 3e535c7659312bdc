"""The output name of each inference input: its stem, unless another input of the run has that stem."""

from __future__ import annotations

from unimiss_monai.data.case_names import OutputNames
from unimiss_monai.data.image_formats import SCANNED_SUFFIXES, image_suffix, split_image_name


def test_split_image_name():
    assert split_image_name("/d/x.nii.gz") == ("x", "nii.gz")
    assert split_image_name("/d/X.PNG") == ("X", "png")
    assert split_image_name("/d/series_1/") == ("series_1", "")
    assert split_image_name("/d/.nii") == (".nii", "")
    assert split_image_name("/d/scan.npy") == ("scan", "npy") and split_image_name("/d/a.b.png") == ("a.b", "png")
    # only a known format is split off: other dots belong to the name (versions, DICOM UIDs)
    assert split_image_name("/d/ct.v2.nii.gz") == ("ct.v2", "nii.gz")
    assert split_image_name("/d/1.2.840.5/") == ("1.2.840.5", "") and split_image_name("/d/notes.txt") == ("notes.txt", "")


def test_a_folder_scan_takes_images_but_not_arrays():
    assert image_suffix("/d/A.NII.GZ") == ".nii.gz" and image_suffix("/d/x.nii") == ".nii"
    assert image_suffix("/d/x.npy") == ".npy" and not image_suffix("/d/x.npy", SCANNED_SUFFIXES)
    assert not image_suffix("/d/.png") and not image_suffix("/d/x.raw")


def test_dotted_names_that_differ_keep_their_dots():
    names = OutputNames(["/d/ct.v2.nii.gz", "/d/ct.v3.nii.gz", "/d/1.2.840.5", "/d/1.2.840.6"])
    assert [names.name(p) for p in ("/d/ct.v2.nii.gz", "/d/ct.v3.nii.gz", "/d/1.2.840.5", "/d/1.2.840.6")] == [
        "ct.v2", "ct.v3", "1.2.840.5", "1.2.840.6"]


def test_stems_that_do_not_clash_keep_todays_names():
    names = OutputNames([{"image": "/d/a.nii.gz"}, {"image": "/d/b.png"}, {"image": "/d/c"}])
    assert [names.name(p) for p in ("/d/a.nii.gz", "/d/b.png", "/d/c")] == ["a", "b", "c"]


def test_clashing_stems_all_keep_their_format_whatever_the_order():
    paths = ["/d/chest_ct_AP.png", "/d/chest_ct_AP.nii.gz", "/d/CHEST_CT_AP.nii", "/d/other.png"]
    for order in (paths, paths[::-1]):
        names = OutputNames(order)
        assert names.name("/d/chest_ct_AP.png") == "chest_ct_AP_png"
        assert names.name("/d/chest_ct_AP.nii.gz") == "chest_ct_AP_nii_gz"
        assert names.name("/d/CHEST_CT_AP.nii") == "CHEST_CT_AP_nii"  # case-insensitive: one file on macOS / Windows
        assert names.name("/d/other.png") == "other"


def test_names_still_alike_are_numbered_and_never_taken_twice():
    paths = ["/b/z.png", "/a/z.png", "/d/x.png", "/d/x.nii", "/d/x_png.nii", "/d/z_png_2.jpg"]
    names = OutputNames(paths)
    assert names.name("/a/z.png") == "z_png" and names.name("/b/z.png") == "z_png_3"  # z_png_2 is another input's
    assert names.name("/d/z_png_2.jpg") == "z_png_2"
    got = [names.name(p).casefold() for p in paths]
    assert len(set(got)) == len(paths)
    assert names.name("/d/x.png") == "x_png" and names.name("/d/x_png.nii") == "x_png_2"  # sorted path order


def test_monai_name_formatter_and_unlisted_inputs():
    names = OutputNames(["/d/x.nii.gz", "/d/x.png"])
    assert names({"filename_or_obj": "/d/x.png", "patch_index": None}) == {"subject": "x_png", "idx": None}
    assert names.name("/elsewhere/y.nii.gz") == "y"


def test_a_name_the_item_gives_stands_and_is_kept_apart_from_the_stems():
    items = [{"image": "/a/P1/ST1/SE1", "name": "P1_ST1_SE1"}, {"image": "/a/P2/ST1/SE1", "name": "P2_ST1_SE1"},
             {"image": "/a/SE1.nii.gz"}, {"image": "/a/P1_ST1_SE1.png"}]
    names = OutputNames(items)
    assert [names.name(i["image"]) for i in items] == ["P1_ST1_SE1", "P2_ST1_SE1", "SE1", "P1_ST1_SE1_png"]
    # the series keep their names when another joins (numbered by order, the first SE1 would now name this one)
    more = OutputNames([{"image": "/a/P0/ST1/SE1", "name": "P0_ST1_SE1"}, *items])
    assert [more.name(i["image"]) for i in items[:2]] == ["P1_ST1_SE1", "P2_ST1_SE1"]


def test_given_names_that_clash_keep_their_format():
    # P1/a.png and P1/a.dcm are both "P1_a" by their path: the format tells them apart, as for plain stems
    names = OutputNames([{"image": "/r/P1/a.png", "name": "P1_a"}, {"image": "/r/P1/a.dcm", "name": "P1_a"}])
    assert [names.name("/r/P1/a.png"), names.name("/r/P1/a.dcm")] == ["P1_a_png", "P1_a_dcm"]
