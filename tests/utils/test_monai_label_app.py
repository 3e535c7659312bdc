"""``tools/monai_label_app.py`` (appended to MONAI Label's sample app) with MONAI Label replaced by stand-ins: its
/infer route runs one inference at a time off the event loop, and inferences waiting their turn hold none of the
server's shared worker threads, which file responses (a viewer downloading an image, an answer's label file) and
large uploads also need; a 2D label saved into the datastore by an inference (``save_label``, as batch inference
saves every label) has its radiograph's geometry, like the label the answer returns."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import types
from pathlib import Path

import pytest

fastapi = pytest.importorskip("fastapi")
anyio = pytest.importorskip("anyio")

REPO = Path(__file__).resolve().parents[2]
APP_FILE = REPO / "tools" / "monai_label_app.py"


def _module(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


class _Calls:
    """The stand-in of MONAI Label's ``run_inference``: the first call waits for ``release``; every call is logged."""

    def __init__(self):
        self.release, self.running, self.most_at_once, self.order = threading.Event(), 0, 0, []
        self.lock = threading.Lock()

    def __call__(self, background_tasks, model, image, session_id, params, file, label, output):
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        if image == "first":
            self.release.wait(30)
        time.sleep(0.01)
        with self.lock:
            self.running -= 1
            self.order.append(image)
        return {"image": image}


@pytest.fixture
def app_namespace(monkeypatch):
    calls = _Calls()
    router = fastapi.APIRouter(prefix="/infer")

    async def api_run_inference(background_tasks, model: str, image: str = "", session_id: str = "",
                                params: str = "{}", file=None, label=None, output=None, user=None):
        return calls(background_tasks, model, image, session_id, params, file, label, output)

    class _Any:
        def __init__(self, *args, **kwargs):
            pass

        def _get_network(self, device, data):
            return None

        def _fetch_datalist(self, request, datastore):
            return []

    server = fastapi.FastAPI()
    modules = {
        "monailabel": _module("monailabel"),
        "monailabel.app": _module("monailabel.app", app=server),
        "monailabel.config": _module("monailabel.config", settings=types.SimpleNamespace(MONAI_LABEL_API_STR="")),
        "monailabel.endpoints": _module("monailabel.endpoints"),
        "monailabel.endpoints.datastore": _module("monailabel.endpoints.datastore", save_label=lambda *a, **k: None),
        "monailabel.endpoints.train": _module("monailabel.endpoints.train", run_model=lambda *a, **k: None),
        "monailabel.endpoints.infer": _module("monailabel.endpoints.infer", router=router, run_inference=calls,
                                              api_run_inference=api_run_inference),
        "monailabel.interfaces": _module("monailabel.interfaces"),
        "monailabel.interfaces.datastore": _module("monailabel.interfaces.datastore",
                                                   DefaultLabelTag=types.SimpleNamespace(ORIGINAL="original")),
        "monailabel.interfaces.utils": _module("monailabel.interfaces.utils"),
        "monailabel.interfaces.utils.app": _module("monailabel.interfaces.utils.app", app_instance=lambda: None),
        "monailabel.tasks": _module("monailabel.tasks"),
        "monailabel.tasks.activelearning": _module("monailabel.tasks.activelearning"),
        "monailabel.tasks.activelearning.epistemic": _module("monailabel.tasks.activelearning.epistemic", Epistemic=_Any),
        "monailabel.tasks.infer": _module("monailabel.tasks.infer"),
        "monailabel.tasks.infer.basic_infer": _module("monailabel.tasks.infer.basic_infer", BasicInferTask=_Any),
    }
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)

    class MyApp:  # the sample app's class, which the file extends
        def init_scoring_methods(self):
            return {}

        def init_strategies(self):
            return {}

        def infer(self, request, datastore=None):  # MONAI Label 0.8.5's MONAILabelApp.infer, its task a stand-in
            datastore = datastore or self.datastore()
            image_id = request["image"]
            result_file, params = self._infers[request["model"]](datastore.get_image_uri(image_id)), {}
            label_id = result_file
            if request.get("save_label", False):
                tag = request.get("label_tag", "original")
                label_id = datastore.save_label(image_id, result_file, tag, {"model": request["model"], "params": params})
            return {"label": label_id, "tag": "original", "file": result_file, "params": params}

        def train(self, request):
            return {}

    namespace = {"__name__": "main", "MyApp": MyApp, "ScoringMethod": _Any, "BundleTrainTask": _Any,
                 "logger": logging.getLogger("main")}
    exec(compile(APP_FILE.read_text(), str(APP_FILE), "exec"), namespace)
    namespace["_calls"] = calls
    namespace["_server"] = server
    return namespace


def test_the_infer_route_is_replaced_and_keeps_the_signature(app_namespace):
    route = app_namespace["_server"].router.routes[0]
    assert route.path == "/infer/{model}" and route.endpoint is app_namespace["_api_run_inference_in_thread"]


def test_waiting_inferences_leave_the_shared_worker_threads_free(app_namespace):
    from starlette.concurrency import run_in_threadpool

    infer, calls = app_namespace["_api_run_inference_in_thread"], app_namespace["_calls"]

    async def scenario():
        # a server's shared pool, shrunk so that a few waiting inferences would fill it
        anyio.to_thread.current_default_thread_limiter().total_tokens = 2
        requests = [asyncio.ensure_future(infer(None, "m", name)) for name in ("first", "second", "third")]
        await asyncio.sleep(0.3)  # all three have arrived; the first one runs and the others wait their turn
        try:
            # a file response or an upload needs a worker thread of the shared pool meanwhile
            other = await asyncio.wait_for(run_in_threadpool(lambda: "served"), timeout=3)
        finally:
            calls.release.set()
        answers = await asyncio.wait_for(asyncio.gather(*requests), timeout=30)
        return other, answers

    other, answers = asyncio.run(scenario())
    assert other == "served"
    assert answers == [{"image": "first"}, {"image": "second"}, {"image": "third"}]
    assert calls.order == ["first", "second", "third"] and calls.most_at_once == 1  # one inference at a time


class _Datastore:
    """MONAI Label's local datastore, as far as inference uses it: images by id, saved labels copied in."""

    def __init__(self, folder: Path):
        self.folder = folder

    def get_image_uri(self, image_id: str) -> str:
        return str(self.folder / f"{image_id}.nii.gz")

    def list_images(self) -> list[str]:
        return sorted(p.name[: -len(".nii.gz")] for p in self.folder.glob("*.nii.gz"))

    def save_label(self, image_id, label_filename, label_tag, label_info):
        import shutil

        target = self.folder / "labels" / label_tag / f"{image_id}.nii.gz"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(label_filename, target)
        return image_id


@pytest.mark.parametrize("save_label", [False, True])
def test_a_2d_label_has_its_radiograph_geometry_also_when_saved_to_the_datastore(app_namespace, tmp_path, save_label):
    nibabel = pytest.importorskip("nibabel")
    import numpy as np

    affine = np.array([[-0.14, 0, 0, 180.0], [0, -0.14, 0, 200.0], [0, 0, 1, 0], [0, 0, 0, 1]])
    nibabel.save(nibabel.Nifti1Image(np.zeros((6, 5), np.float32), affine), tmp_path / "cxr1.nii.gz")
    datastore = _Datastore(tmp_path)

    def task(image_path):  # MONAI Label's writer: a 2D label without its image's affine
        out = tmp_path / "result.nii.gz"
        nibabel.save(nibabel.Nifti1Image(np.ones((6, 5), np.float32), np.eye(4)), out)
        return str(out)

    app = app_namespace["MyApp"]()
    app._infers = {"unimiss_cxr_segmentation": task}
    app.datastore = lambda: datastore
    request = {"model": "unimiss_cxr_segmentation", "image": "cxr1"}
    result = app.infer({**request, "save_label": True} if save_label else request)
    returned = nibabel.load(result["file"])
    np.testing.assert_allclose(returned.affine, affine)
    assert returned.get_data_dtype() == np.uint8
    saved = tmp_path / "labels" / "original" / "cxr1.nii.gz"
    assert saved.exists() == save_label
    if save_label:
        assert result["label"] == "cxr1"
        np.testing.assert_allclose(nibabel.load(saved).affine, affine)
        assert np.asarray(nibabel.load(saved).dataobj).tolist() == np.ones((6, 5)).tolist()


def test_a_label_of_a_tilted_gantry_ct_keeps_its_sheared_grid(app_namespace, tmp_path):
    """ITK writes a label on a sheared grid (a tilted gantry) with its axes forced to right angles: a viewer drew it off
    the CT, and the label read back was refused. It gets the CT's affine, without a qform (which cannot hold a shear);
    a label whose grid is not the CT's is left as it is."""
    nibabel = pytest.importorskip("nibabel")
    import numpy as np

    from unimiss_monai.data.grid_checks import check_nifti_header

    affine = np.array([[0.8, 0, 0, -90.0], [0, 0.8, 0.6, -120.0], [0, 0, 2.5, 40.0], [0, 0, 0, 1]])
    nibabel.save(nibabel.Nifti1Image(np.zeros((6, 5, 4), np.float32), affine), tmp_path / "ct1.nii.gz")
    sizes = np.linalg.norm(affine[:3, :3], axis=0)
    u, _, vt = np.linalg.svd(affine[:3, :3] / sizes)
    forced = affine.copy()
    forced[:3, :3] = (u @ vt) * sizes  # the nearest grid at right angles, as ITK's writer makes it
    app = app_namespace["MyApp"]()
    app.datastore = lambda: _Datastore(tmp_path)
    for shape, expected in (((6, 5, 4), affine), ((4, 5, 6), forced)):
        out = tmp_path / f"result{shape[0]}.nii.gz"
        nibabel.save(nibabel.Nifti1Image(np.ones(shape, np.float32), forced), out)
        app._infers = {"unimiss_ct_segmentation": lambda image_path, out=out: str(out)}
        returned = nibabel.load(app.infer({"model": "unimiss_ct_segmentation", "image": "ct1"})["file"])
        np.testing.assert_allclose(returned.affine, expected, atol=1e-5)
    assert int(nibabel.load(tmp_path / "result6.nii.gz").header["qform_code"]) == 0
    check_nifti_header(str(tmp_path / "result6.nii.gz"))  # read back (a correction submitted for training): one grid


def test_a_model_trained_at_other_settings_is_refused_when_loaded(app_namespace, tmp_path, monkeypatch):
    import torch
    from monai.bundle import ConfigParser

    path = tmp_path / "model.pt"
    torch.save({"model": {}, "info": {"settings": {"pixdim": [10, 10, 10], "roi_size": [16, 32, 32]}}}, path)
    config = ConfigParser({"model_settings": {"pixdim": [1.5, 1.5, 2.5], "roi_size": [16, 32, 32]}})
    task = types.SimpleNamespace(bundle_config=config, get_path=lambda: str(path))
    network = torch.nn.Linear(2, 2)
    monkeypatch.setitem(app_namespace, "_bundle_get_network", lambda self, device, data: network)
    with pytest.raises(ValueError) as err:
        app_namespace["_get_network"](task, "cpu", {})
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "pixdim [10, 10, 10] (this run: [1.5, 1.5, 2.5])" in message
    assert not hasattr(task, "_unimiss_weights")  # not noted as answering: the next request checks again
    task.bundle_config = ConfigParser({"model_settings": {"pixdim": [10.0, 10.0, 10.0], "roi_size": [16, 32, 32]}})
    assert app_namespace["_get_network"](task, "cpu", {}) is network and task._unimiss_weights[0] is network


def test_a_model_of_structures_in_another_order_is_refused_when_loaded(app_namespace, tmp_path, monkeypatch):
    """Served, its label values would have gone by other structures' names in the viewer."""
    import torch
    from monai.bundle import ConfigParser

    path = tmp_path / "model.pt"
    info = {"classes": ["lung_right", "lung_left"], "settings": {"roi_size": [16, 32]}}
    torch.save({"model": {}, "info": info}, path)
    config = ConfigParser({"model_settings": {"roi_size": [16, 32]}, "structures": ["lung_left", "lung_right"],
                           "load_model": {"classes": "@structures"}})
    task = types.SimpleNamespace(bundle_config=config, get_path=lambda: str(path))
    monkeypatch.setitem(app_namespace, "_bundle_get_network", lambda self, device, data: torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match=rf"^the served model {path} was trained for the same classes in another "
                                         r"order \(\['lung_right', 'lung_left'\]\) where the served config names "
                                         r"\['lung_left', 'lung_right'\]; serve it with the configs it was trained"):
        app_namespace["_get_network"](task, "cpu", {})
    assert not hasattr(task, "_unimiss_weights")


def test_a_model_holding_nan_is_refused_when_loaded(app_namespace, tmp_path, monkeypatch):
    import torch

    from unimiss_monai.utils.finite import NonFiniteWeightsError

    path = tmp_path / "model.pt"
    network = torch.nn.Linear(2, 2)
    with torch.no_grad():
        network.bias[1] = float("nan")
    task = types.SimpleNamespace(bundle_config=None, get_path=lambda: str(path))
    monkeypatch.setitem(app_namespace, "_bundle_get_network", lambda self, device, data: network)
    with pytest.raises(NonFiniteWeightsError, match=rf"^the served model {path}: tensor bias holds NaN or Inf"):
        app_namespace["_get_network"](task, "cpu", {})
    assert not hasattr(task, "_unimiss_weights")
    refusal = app_namespace["_refusal"](NonFiniteWeightsError("x"), None, "")
    assert refusal is not None and refusal.status_code == 422  # answered as a refused input, not a server error
    with torch.no_grad():
        network.bias[1] = 0.0
    assert app_namespace["_get_network"](task, "cpu", {}) is network

