"""DRR renderer: analytic path lengths, independent references, backends, geometry conventions, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unimiss_monai import drr
from unimiss_monai.drr.geometry import ConeBeam, Pose

from .reference import box_chord, siddon_numpy, sphere_chord

GEOM = dict(detector_shape=(9, 11), pixel_spacing=(4.0, 3.0), sdd=300.0, sid=200.0)


def _world_rays(shape, affine, view="AP", **geom):
    g = ConeBeam(geom.get("detector_shape", (9, 11)), geom.get("pixel_spacing", 1.0), geom.get("sdd", 300.0),
                 geom.get("sid", 200.0))
    return g.pixel_centres(drr.as_pose(view), drr.volume_center(shape, affine))


def test_single_voxel_central_ray():
    img = drr.render(np.ones((1, 1, 1), np.float32), np.eye(4), detector_shape=(3, 3), pixel_spacing=0.1,
                     sdd=300.0, sid=200.0, volume_unit="mu")
    assert img.shape == (1, 3, 3)
    assert img[0, 1, 1].item() == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize(
    "view, axis_aligned", [("AP", True), ("LAT_LEFT", True), ({"view": "PA", "rotation": (10, -20, 25)}, False)]
)
def test_uniform_box_chord(view, axis_aligned):
    shape, spacing = (10, 14, 8), np.array([1.5, 1.0, 2.0])
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (5.0, -3.0, 7.0)
    source, pixels = _world_rays(shape, affine, view, **GEOM)
    lo = affine[:3, 3] - spacing / 2
    hi = lo + spacing * np.array(shape)
    want = np.array([[box_chord(lo, hi, source, p) for p in row] for row in pixels])
    ones = np.ones(shape, np.float32)
    sid_img = drr.render(ones, affine, views=[view], volume_unit="mu", **GEOM)[0].numpy()
    np.testing.assert_allclose(sid_img, want, rtol=1e-5, atol=1e-4)
    tri = drr.render(ones, affine, views=[view], method="trilinear", volume_unit="mu", **GEOM)[0].numpy()
    inner = want > 0
    inner[1:-1, 1:-1] &= inner[:-2, 1:-1] & inner[2:, 1:-1] & inner[1:-1, :-2] & inner[1:-1, 2:]
    inner[[0, -1]], inner[:, [0, -1]] = False, False
    if axis_aligned:  # away from the side faces: the exact chord
        np.testing.assert_allclose(tri[inner], want[inner], rtol=2e-3)
    # across the faces the interpolated fall-off conserves mass: compare detector integrals on a fine detector
    fine = dict(GEOM, detector_shape=(90, 110), pixel_spacing=(0.4, 0.3))
    s_fine = drr.render(ones, affine, views=[view], volume_unit="mu", **fine).sum()
    t_fine = drr.render(ones, affine, views=[view], method="trilinear", volume_unit="mu", **fine).sum()
    assert t_fine.item() == pytest.approx(s_fine.item(), rel=0.01)


def test_trilinear_axis_aligned_ray_is_exact_chord():
    img = drr.render(np.ones((5, 12, 5), np.float32), np.diag([1.0, 0.7, 1.0, 1.0]), detector_shape=(3, 3),
                     pixel_spacing=0.1, method="trilinear", volume_unit="mu", sdd=300.0, sid=200.0)
    assert img[0, 1, 1].item() == pytest.approx(12 * 0.7, rel=1e-5)


def test_sphere_chord():
    n, r = 40, 15.0
    grid = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1) - (n - 1) / 2
    ball = (np.linalg.norm(grid, axis=-1) <= r).astype(np.float32)
    source, pixels = _world_rays(ball.shape, np.eye(4), "AP", detector_shape=(15, 15), pixel_spacing=2.4)
    centre = np.full(3, (n - 1) / 2)  # world centre of the volume under an identity affine
    want = np.array([[sphere_chord(centre, r, source, p) for p in row] for row in pixels])
    got = drr.render(ball, np.eye(4), detector_shape=(15, 15), pixel_spacing=2.4, sdd=300.0, sid=200.0,
                     volume_unit="mu")[0].numpy()
    assert abs(got[7, 7] - want[7, 7]) <= 1.0  # one voxel of staircase at most
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 0.05


def _oblique_affine():
    rot = drr.Pose("AP", rotation=(20, -10, 35)).rotation_matrix()
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([1.2, 0.8, 1.5])
    affine[:3, 3] = (-4.0, 6.0, 2.0)
    return affine


def test_siddon_matches_numpy_reference():
    rng = np.random.default_rng(0)
    mu = rng.uniform(0, 1, (6, 7, 5)).astype(np.float32)
    affine = _oblique_affine()
    pose = drr.Pose("LL", rotation=(5, 15, -30), translation=(1.0, -2.0, 0.5))
    source, pixels = _world_rays(mu.shape, affine, pose, **GEOM)
    want = np.array([[siddon_numpy(mu, affine, source, p) for p in row] for row in pixels])
    got = drr.render(mu, affine, views=[pose], volume_unit="mu", **GEOM)[0].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "spacing, pose, sdd",
    [
        ((1.0, 1.0, 1.0), drr.Pose("AP", rotation=(0, 0, 45)), 300.0),  # diagonal rays: ties between axes
        ((1.0, 1.0, 1.0), drr.Pose("AP", rotation=(35.26439, 0, 45)), 300.0),  # space diagonal
        ((0.4, 1.0, 2.5), drr.Pose("LL", rotation=(20, -10, 30)), 300.0),  # dominant voxel axis != world axis
        ((1.0, 1.2, 0.8), drr.Pose("PA", rotation=(-15, 25, 5)), 204.0),  # detector plane cuts the volume
    ],
)
def test_siddon_walk_matches_reference_in_hard_cases(spacing, pose, sdd):
    rng = np.random.default_rng(3)
    mu = rng.uniform(0, 1, (9, 8, 7)).astype(np.float32)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (1.0, -2.0, 0.5)
    geom = dict(detector_shape=(13, 15), pixel_spacing=1.1, sdd=sdd, sid=200.0)
    source, pixels = _world_rays(mu.shape, affine, pose, **geom)
    want = np.array([[siddon_numpy(mu, affine, source, p) for p in row] for row in pixels])
    got = drr.render(mu, affine, views=[pose], volume_unit="mu", **geom)[0].numpy()
    assert (want > 0).mean() > 0.3  # most rays cross the volume
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("method", ["siddon", "trilinear"])
def test_numba_matches_torch_path(method):
    rng = np.random.default_rng(1)
    mu = rng.uniform(0, 1, (8, 9, 7)).astype(np.float32)
    views = ["AP", {"view": "RL", "rotation": (12, 0, 20)}]
    kw = dict(views=views, method=method, volume_unit="mu", **GEOM)
    fast = drr.render(mu, _oblique_affine(), **kw)
    ref = drr.render(torch.from_numpy(mu), _oblique_affine(), backend="torch", **kw)
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-4)


def test_siddon_trilinear_agree_on_smooth_volume():
    grid = np.stack(np.meshgrid(*[np.arange(24)] * 3, indexing="ij"), -1) - 11.5
    blob = np.exp(-(grid**2).sum(-1) / (2 * 5.0**2)).astype(np.float32)
    kw = dict(views=["AP", "LL"], volume_unit="mu", detector_shape=(32, 32), pixel_spacing=1.5, sdd=300.0, sid=200.0)
    s = drr.render(blob, np.eye(4), **kw)
    t = drr.render(blob, np.eye(4), method="trilinear", **kw)
    assert (torch.linalg.norm(s - t) / torch.linalg.norm(s)).item() < 0.01


def _marker_volume():
    """RAS-ordered volume: a long bar on the patient's right, a dot superior-anterior, symmetric front/back mass."""
    v = np.zeros((12, 10, 14), np.float32)
    v[9:11, 3:7, 2:12] = 1.0  # +x = patient right
    v[5:7, 3:7, 11:13] = 2.0  # superior (+z)
    return v


def test_display_convention_and_mirrors():
    v, affine = _marker_volume(), np.eye(4)
    kw = dict(volume_unit="mu", detector_shape=(28, 24), pixel_spacing=1.0, sdd=300.0, sid=200.0)
    ap, pa, ll, rot = drr.render(v, affine, views=["AP", "PA", "LAT_LEFT", Pose("AP", rotation=(0, 0, -90))], **kw)
    cols = ap.sum(0)
    assert cols[: 12].sum() > 2 * cols[12:].sum()  # patient right on image left (radiological AP)
    rows = (ap > 1.5).any(1).nonzero()
    assert rows.float().mean() < 14  # superior marker in the upper half
    # front/back-symmetric volume: PA is hung like AP (patient's right on the image left), not mirrored
    torch.testing.assert_close(pa, ap, rtol=1e-5, atol=1e-5)
    # 90 degrees about the superior axis casts the lateral's rays, but hangs as AP does: the left lateral is hung from
    # the detector side, i.e. that image mirrored left-right
    torch.testing.assert_close(rot.flip(-1), ll, rtol=1e-5, atol=1e-5)


def test_lps_and_ras_inputs_give_same_image():
    ras = _marker_volume()
    affine_ras = np.diag([0.9, 1.1, 1.3, 1.0])
    affine_ras[:3, 3] = (-5.0, -6.0, -9.0)
    lps = ras[::-1, ::-1].copy()  # same patient, voxel axes running to the left and posterior
    flip = np.eye(4)
    flip[:2, :2] = -np.eye(2)
    flip[:2, 3] = np.array(ras.shape[:2]) - 1
    affine_lps_array = affine_ras @ flip  # RAS world affine of the LPS-ordered array
    kw = dict(views=["AP", "LL"], volume_unit="mu", **GEOM)
    a = drr.render(ras, affine_ras, **kw)
    b = drr.render(lps, affine_lps_array, **kw)
    c = drr.render(lps, np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_lps_array, affine_space="LPS", **kw)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-5)


def test_batch_equals_one_by_one_and_intensity():
    rng = np.random.default_rng(2)
    hu = rng.uniform(-1000, 1500, (2, 6, 7, 5)).astype(np.float32)
    affines = np.stack([np.eye(4), _oblique_affine()])
    batch = drr.render(hu, affines, views=["AP", "PA"], **GEOM)
    assert batch.shape == (2, 2, 9, 11) and batch.dtype == torch.float32
    for b in range(2):
        torch.testing.assert_close(batch[b], drr.render(hu[b], affines[b], views=["AP", "PA"], **GEOM))
    inten = drr.render(hu, affines, views=["AP", "PA"], output="intensity", i0=2.0, **GEOM)
    torch.testing.assert_close(inten, 2.0 * torch.exp(-batch))


def test_hu_to_mu_model():
    hu = np.array([-2000.0, -1000.0, 0.0, 1000.0])
    np.testing.assert_allclose(drr.hu_to_mu(hu, 0.02, 2.0), [0.0, 0.0, 0.02, 0.06], rtol=1e-6)
    t = drr.hu_to_mu(torch.tensor(hu), 0.02, 2.0)
    np.testing.assert_allclose(t.numpy(), [0.0, 0.0, 0.02, 0.06], rtol=1e-6)


def test_torch_path_gradient_is_the_adjoint():
    rng = np.random.default_rng(3)
    mu = torch.tensor(rng.uniform(0, 1, (5, 6, 4)), dtype=torch.float32, requires_grad=True)
    img = drr.render(mu, np.eye(4), volume_unit="mu", **GEOM)
    weights = torch.rand_like(img)
    (img * weights).sum().backward()
    probe = torch.tensor(rng.uniform(0, 1, (5, 6, 4)), dtype=torch.float32)
    forward = (drr.render(probe.numpy(), np.eye(4), volume_unit="mu", **GEOM) * weights).sum()
    assert (mu.grad * probe).sum().item() == pytest.approx(forward.item(), rel=1e-4)


def test_detector_affine_carries_spacing_and_matches_rays():
    aff = drr.detector_affine("AP", (9, 11), (4.0, 3.0), 300.0, 200.0, isocenter=(1.0, 2.0, 3.0))
    np.testing.assert_allclose(np.linalg.norm(aff[:3, :2], axis=0), [4.0, 3.0])
    _, pixels = ConeBeam((9, 11), (4.0, 3.0), 300.0, 200.0).pixel_centres(Pose("AP"), np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(aff @ [2, 5, 0, 1], [*pixels[2, 5], 1.0])
    assert aff[2, 0] < 0  # rows run towards the feet
    iso = drr.detector_affine("AP", (9, 11), (4.0, 3.0), 300.0, 200.0, at_isocenter=True)
    np.testing.assert_allclose(np.linalg.norm(iso[:3, :2], axis=0), [4.0 * 200 / 300, 3.0 * 200 / 300])


def test_module_matches_function_and_setter():
    rng = np.random.default_rng(4)
    hu = rng.uniform(-1000, 500, (6, 7, 5)).astype(np.float32)
    module = drr.DRR(hu, np.eye(4), **GEOM)
    torch.testing.assert_close(module(["AP", "LL"]), drr.render(hu, np.eye(4), views=["AP", "LL"], **GEOM))
    module.set_geometry(detector_shape=(4, 4))
    assert module("AP").shape == (1, 4, 4)


def test_to_radiograph_bone_bright():
    img = torch.linspace(0, 5, 64).reshape(8, 8)
    png = drr.to_radiograph(img, bits=16)
    assert png.dtype == np.uint16 and png[0, 0] == 0 and png[-1, -1] == 65535
    assert drr.to_radiograph(img, window=(0, 5))[4, 4] > drr.to_radiograph(img, window=(0, 5))[1, 1]


def test_to_radiograph_refuses_what_has_no_grey_level():
    img = torch.linspace(0, 5, 64).reshape(8, 8)
    # a reversed window used to saturate silently: everything below 'low' black, everything else white
    with pytest.raises(ValueError, match="low < high"):
        drr.to_radiograph(img, window=(5, 0))
    bad = img.clone()
    bad[2, 3] = float("nan")  # its percentile window is NaN: the image came out all black
    with pytest.raises(ValueError, match="1 NaN or Inf"):
        drr.to_radiograph(bad)


def test_unknown_view_names_valid_choices():
    with pytest.raises(ValueError, match=r"'OBLIQUE'.*AP.*LAT_LEFT"):
        drr.render(np.zeros((4, 4, 4)), np.eye(4), views=["OBLIQUE"])
    assert drr.Pose("lat-left").view == drr.Pose("ll").view == "LAT_LEFT"


def test_source_inside_volume_is_rejected():
    with pytest.raises(ValueError, match="inside the volume"):
        drr.render(np.zeros((64, 64, 64)), np.diag([10.0, 10.0, 10.0, 1.0]), sid=100.0, sdd=200.0)


def test_detector_too_large_is_rejected():
    with pytest.raises(ValueError, match="detector 200000x200000"):
        drr.render(np.zeros((4, 4, 4)), np.eye(4), detector_shape=(200000, 200000))


def test_nan_voxels_are_rejected():
    vol = np.zeros((4, 4, 4), np.float32)
    vol[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="1 NaN voxels"):
        drr.render(vol, np.eye(4))
    with pytest.raises(ValueError, match="affine must be 4x4"):
        drr.render(np.zeros((4, 4, 4)), np.eye(3))


@pytest.mark.parametrize("value", [np.inf, -np.inf])
@pytest.mark.parametrize("unit", ["hu", "mu"])
@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_infinite_voxels_are_rejected(value, unit, backend):
    # the kernels compile with fast-math (no Inf assumed): an Inf voxel would give Inf/NaN rays, or silently 0 for
    # -Inf HU, instead of an error naming the problem
    vol = np.zeros((6, 6, 6), np.float32)
    vol[3, 3, 3] = value
    volume = torch.from_numpy(vol) if backend == "torch" else vol
    with pytest.raises(ValueError, match="1 non-finite"):
        drr.render(volume, np.diag([2.0, 2.0, 2.0, 1.0]), detector_shape=(4, 4), pixel_spacing=4.0, sdd=300.0,
                   sid=200.0, volume_unit=unit, backend=backend)


@pytest.mark.parametrize("bad", [
    {"pixel_spacing": float("nan")},  # rendered a black image
    {"pixel_spacing": (1.0, float("inf"))},
    {"sdd": float("inf")},
    {"principal_point": (float("nan"), 0.0)},
    {"views": {"view": "AP", "rotation": (float("nan"), 0.0, 0.0)}},  # rendered a NaN image
    {"views": {"view": "LL", "translation": (0.0, float("inf"), 0.0)}},
    {"isocenter": (0.0, float("nan"), 0.0)},
])
def test_non_finite_geometry_is_rejected(bad):
    kw = {"detector_shape": (4, 4), "pixel_spacing": 4.0, "sdd": 300.0, "sid": 200.0, **bad}
    with pytest.raises(ValueError, match="finite"):
        drr.render(np.zeros((6, 6, 6), np.float32), np.diag([2.0, 2.0, 2.0, 1.0]), **kw)


def test_a_numpy_ct_asked_onto_a_gpu_takes_the_pytorch_path():
    # the DRR bundle reads CTs as numpy and passes its device on: "cuda" must render there, not in the CPU kernels
    from unimiss_monai.drr.volume import _on_torch

    hu = np.zeros((4, 4, 4), np.float32)
    assert _on_torch(hu, "cuda") and _on_torch(hu, torch.device("cuda:1"))
    assert not _on_torch(hu, None) and not _on_torch(hu, "cpu")
    assert _on_torch(torch.zeros(4, 4, 4, requires_grad=True), "cpu")



def test_the_pytorch_path_takes_a_flipped_numpy_ct(monkeypatch):
    # a CT read as a flipped view has negative strides, which torch.from_numpy refuses; the PyTorch path (forced onto
    # the CPU here, as it runs on a GPU) prepares the same attenuation as the compiled kernels
    from unimiss_monai.drr import volume as volume_module

    hu = np.random.default_rng(0).uniform(-1000, 1500, (6, 5, 4)).astype(np.float32)[::-1]
    kernels = drr.prepare_volume(hu, np.eye(4))
    monkeypatch.setattr(volume_module, "_on_torch", lambda volume, device: True)
    on_torch = drr.prepare_volume(hu, np.eye(4))
    assert torch.is_tensor(on_torch.values) and isinstance(kernels.values, np.ndarray)
    np.testing.assert_allclose(on_torch.values.numpy(), kernels.values, rtol=1e-6, atol=1e-9)
