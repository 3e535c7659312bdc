"""Added to MONAI Label 0.8.5's sample ``monaibundle`` app by ``tools/monai_label.sh``: the script appends this
file to the app's ``main.py``, so ``MyApp``, ``ScoringMethod``, ``BundleTrainTask`` and ``logger`` are that file's.
It runs in ``.venv-label`` (MONAI Label's own environment), never in the package's.

What the monaibundle app of 0.8.5 lacks for these bundles, added to its class here:
- which image next: per served bundle, a scoring method "<bundle>_tta" (unimiss_monai.metrics.uncertainty's
  bundle_uncertainty on every unlabelled study of the bundle's dimensionality, stored in the datastore as
  "unimiss_tta_uncertainty_<bundle>") and a strategy "<bundle>_tta_uncertainty" serving the highest-scored
  unlabelled study (MONAI Label's Epistemic strategy reading that key). One key and one strategy per bundle: the 2D
  and 3D bundles score different studies on different scales (sigmoid and softmax outputs), so one ranking of both
  would send a CT reader a radiograph. The app registers only "random" and "first", and its own epistemic scoring (--conf epistemic_model)
  needs a network_def with a dropout argument, which UniMissSegmentation has not.
- clear refusals where MONAI Label alone answers a bare 500 or accepts anything: /infer and /train answer an unknown
  model with 404 and an input or label the bundle refuses with 422 and the one-line reason; /infer of an image id
  the datastore has not answers 404 naming it; /train refuses a max_epochs that is not a positive whole number or a
  val_split outside [0, 1) (-1: the bundle's own) with 422, before any training starts; PUT /datastore/label
  checks the label against its image (readable, on the image's grid, values the served models use) before it is
  saved.
- one app for 2D and 3D bundles: /train of a model takes only the labelled studies of its dimensionality.
- weights for the served settings: a model.pt that records other classes (or in another order) or input settings than
  the served config's ``load_model#classes`` and ``model_settings`` is refused with 422, as the bundle's inference is.
- which weights answered: /infer's result params carry "weights_sha256", a digest of the weights in memory
  (parameter names and bytes), which changes when the model reloads the model.pt a /train published.
- 2D labels where their radiograph is: MONAI Label writes a 2D label without its image's affine; the returned
  label gets it back, and so does one an inference saves into the datastore (save_label, as batch inference does).
- answers as soon as they are ready: the route of /infer runs the whole inference inside the web server's event
  loop, so while requests queue no finished answer is sent (50 requests at once all came back after the last had
  run). The route now runs the same inference in a worker thread, one inference at a time as before, and the event
  loop sends each answer when it is ready. Requests waiting their turn wait on the loop, not in the web server's
  shared worker threads, which file responses (an image a viewer downloads, the label of an answer) and large uploads
  need too.
"""

# --- added by unimiss_monai: tools/monai_label_app.py, appended by tools/monai_label.sh --------------------------
import hashlib as _hashlib
import os as _os
import pathlib as _pathlib
import shutil as _shutil
import tempfile as _tempfile

import torch as _torch
from fastapi import HTTPException as _HTTPException
from monailabel.endpoints import datastore as _datastore_endpoint
from monailabel.endpoints import train as _train_endpoint
from monailabel.interfaces.utils.app import app_instance as _app_instance
from monailabel.tasks.activelearning.epistemic import Epistemic as _RankByInfoKey
from monailabel.tasks.infer.basic_infer import BasicInferTask as _BasicInferTask

# the bundles' output activations: a sigmoid channel per structure (CXR), softmax over classes (CT)
_ACTIVATIONS = {"unimiss_cxr_segmentation": "sigmoid", "unimiss_ct_segmentation": "softmax"}


def _spatial_ndim(path):
    """Spatial dimensions of a NIfTI image from its header, trailing singleton axes dropped; None for other files."""
    if not str(path).endswith((".nii", ".nii.gz")):
        return None
    import nibabel

    try:
        shape = list(nibabel.load(str(path)).shape)
    except Exception:  # unreadable: the bundle refuses it with its own reason
        return None
    while len(shape) > 2 and shape[-1] == 1:
        shape.pop()
    return len(shape)


def _bundle_ndim(bundle_dir):
    import json

    with open(_os.path.join(bundle_dir, "configs", "metadata.json")) as f:
        return len(json.load(f)["network_data_format"]["inputs"]["image"]["spatial_shape"])


def _weights_sha256(network):
    digest = _hashlib.sha256()
    for name, tensor in sorted(network.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(_torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _tta_key(name):
    """The datastore key of bundle ``name``'s uncertainty scores."""
    return f"unimiss_tta_uncertainty_{name}"


class TTAUncertaintyScoring(ScoringMethod):
    """Score every unlabelled study with the bundle (shifted copies disagreeing = uncertain); store the score."""

    def __init__(self, name, bundle_dir, activation):
        super().__init__(f"Test-time-augmentation uncertainty of the unlabelled studies for {name} (unimiss_monai)")
        self.key, self.bundle_dir, self.activation = _tta_key(name), bundle_dir, activation

    def __call__(self, request, datastore):
        from unimiss_monai.metrics.uncertainty import bundle_uncertainty

        ndim = _bundle_ndim(self.bundle_dir)
        uris = {datastore.get_image_uri(i): i for i in datastore.get_unlabeled_images()}
        uris = {u: i for u, i in uris.items() if _spatial_ndim(u) in (ndim, None)}
        scores = bundle_uncertainty(self.bundle_dir, list(uris), activation=self.activation, device=request.get("device", "cpu"))
        for uri, score in scores.items():
            datastore.update_image_info(uris[uri], {self.key: score})
        return {"scored": {uris[u]: s for u, s in scores.items()}, "not_scored": sorted(uris[u] for u in uris if u not in scores)}


_bundle_scoring_methods, _bundle_strategies = MyApp.init_scoring_methods, MyApp.init_strategies


def _scoring_methods(self):
    methods = _bundle_scoring_methods(self)
    methods.update({f"{n}_tta": TTAUncertaintyScoring(n, b, _ACTIVATIONS.get(n, "softmax")) for n, b in self.models.items()})
    return methods


def _strategies(self):
    strategies = _bundle_strategies(self)
    for n in self.models:
        strategies[f"{n}_tta_uncertainty"] = _RankByInfoKey(
            key=_tta_key(n), desc=f"The unlabelled study {n} is least sure of first (run /scoring/{n}_tta first)")
    return strategies


def _refusal(err, path, name):
    """422 with the one-line reason of a refused input, the temporary name of an upload replaced by ``name``."""
    from nibabel.filebasedimages import ImageFileError
    from unimiss_monai.utils.errors import failure_reason, root_cause

    if not isinstance(root_cause(err), (ValueError, ImageFileError)):
        return None
    reason = failure_reason(err)
    if path and _os.path.dirname(path) == _tempfile.gettempdir():  # an upload, saved by MONAI Label under a temporary name
        reason = reason.replace(path, name)
    return _HTTPException(status_code=422, detail=reason)


_bundle_infer = MyApp.infer


def _infer(self, request, datastore=None):
    model = request.get("model")
    if model not in self._infers:
        raise _HTTPException(status_code=404, detail=f"no model '{model}' on this server; it serves {sorted(self._infers)}")
    image = request.get("image")
    in_datastore = isinstance(image, str) and not _os.path.exists(image)
    # a label to keep in the datastore (save_label; batch inference asks it for every study) is saved here, after its
    # geometry is mended: MONAI Label would save a copy of the label as its writer left it
    save = bool(request.get("save_label", False)) and in_datastore
    if in_datastore and image not in (datastore or self.datastore()).list_images():  # MONAI Label: a 500 ("no DICOMs in: .")
        raise _HTTPException(status_code=404, detail=f"no image '{image}' in the datastore; GET /datastore/?output=all "
                                                     "lists the image ids (its \"objects\"), or upload the image as file")
    try:
        result = _bundle_infer(self, {**request, "save_label": False} if save else request, datastore)
    except Exception as err:
        refusal = _refusal(err, str(request.get("image", "")), "the uploaded file")
        if refusal is None:
            raise
        raise refusal from None
    noted = getattr(self._infers[model], "_unimiss_weights", None)
    if noted is not None and isinstance(result.get("params"), dict):
        result["params"]["weights_sha256"] = noted[1]
    if in_datastore:
        datastore = datastore or self.datastore()
        image = datastore.get_image_uri(image)
    _give_label_its_image_geometry(result.get("file"), image)
    label_file = result.get("file")
    if save and isinstance(label_file, str) and _os.path.exists(label_file):
        from monailabel.interfaces.datastore import DefaultLabelTag

        tag = request.get("label_tag", DefaultLabelTag.ORIGINAL)
        result["label"] = datastore.save_label(request["image"], label_file, tag,
                                               {"model": model, "params": result.get("params")})
    return result


def _give_label_its_image_geometry(label_path, image_path):
    """MONAI Label 0.8.5's writer loses two geometries of a label on its image's grid: a 2D label is written without an
    affine (ITK's default geometry, 1 mm pixels at the origin), and ITK forces the axes of a CT from a tilted gantry (a
    sheared grid) to right angles, moving every voxel off the slice axis, so a viewer would draw either away from its
    image. A NIfTI label on the voxel grid of a NIfTI image then gets the image's affine (without a qform for a sheared
    one, which a qform cannot hold: ``save_nifti``) and the label map's own type (uint8)."""
    import nibabel
    import numpy as np
    from unimiss_monai.data.grid_checks import is_sheared
    from unimiss_monai.data.writers import save_nifti

    nifti = (".nii", ".nii.gz")
    if not (isinstance(label_path, str) and label_path.endswith(nifti) and _os.path.isfile(label_path)
            and isinstance(image_path, str) and image_path.endswith(nifti) and _os.path.isfile(image_path)):
        return
    image, label = nibabel.load(image_path), nibabel.load(label_path)
    if len(label.shape) == 2:
        lost = tuple(label.shape) == image.shape[:2] and all(s == 1 for s in image.shape[2:])
    else:  # the same voxel sizes and origin: the grid forced to right angles, not a label in another voxel order
        lost = (len(label.shape) == 3 and tuple(label.shape) == image.shape[:3] and is_sheared(image.affine)
                and np.allclose(np.linalg.norm(label.affine[:3, :3], axis=0),
                                np.linalg.norm(image.affine[:3, :3], axis=0), atol=1e-3)
                and np.allclose(label.affine[:3, 3], image.affine[:3, 3], atol=1e-3))
    if not lost:
        return
    values = np.asanyarray(label.dataobj)
    if values.min() >= 0 and values.max() <= 255:
        values = values.astype(np.uint8)
    save_nifti(values, image.affine, label_path)  # to a temporary name, then renamed over the label


_bundle_get_network = _BasicInferTask._get_network


def _check_model_settings(self):
    """Refuse a model.pt trained for other classes (or in another order) or input settings (spacing, window, size) than
    the served config's, as the bundle's own inference refuses it: its labels would look plausible and be wrong."""
    from unimiss_monai.handlers.checkpoint_info import settings_mismatch
    from unimiss_monai.handlers.pretrained_init import class_name_list, classes_mismatch
    from unimiss_monai.networks.weights_file import recorded_info

    config, path = getattr(self, "bundle_config", None), self.get_path()
    if not path or config is None or "model_settings" not in config.config:
        return
    info = recorded_info(_torch.load(path, map_location="cpu", weights_only=True))
    classes = config.get_parsed_content("load_model#classes", default=None)
    if how := classes_mismatch(info.get("classes"), classes):  # its labels would go by other structures' names
        raise ValueError(f"the served model {path} was trained for {how} ({info.get('classes')}) where the served "
                         f"config names {class_name_list(classes)}; serve it with the configs it was trained with")
    if diffs := settings_mismatch(info.get("settings"), config.get_parsed_content("model_settings")):
        raise ValueError(f"the served model {path} was trained with other input settings: {diffs}; serve it with the "
                         "overlay it was trained with (OVERLAY of tools/monai_label.sh)")


def _get_network(self, device, data):
    network = _bundle_get_network(self, device, data)
    noted = getattr(self, "_unimiss_weights", None)
    if network is not None and (noted is None or noted[0] is not network):  # loaded now: first use or a newer model.pt
        from unimiss_monai.utils.finite import refuse_non_finite_weights

        # a diverged model answers empty labels that look like a result: refused (422) as the bundle's inference does
        refuse_non_finite_weights(network.state_dict(), f"the served model {self.get_path()}")
        _check_model_settings(self)
        self._unimiss_weights = (network, _weights_sha256(network))
    return network


_bundle_train = MyApp.train


def _train(self, request):
    """/train?run_sync=true: a label or image the bundle refuses answers 422 with its one-line reason, not 500."""
    try:
        return _bundle_train(self, request)
    except Exception as err:
        refusal = _refusal(err, None, None)
        if refusal is None:
            raise
        raise refusal from None


_bundle_fetch_datalist = BundleTrainTask._fetch_datalist


def _fetch_datalist(self, request, datastore):
    """The labelled studies of the bundle's dimensionality (an app may serve 2D and 3D bundles from one datastore)."""
    datalist = _bundle_fetch_datalist(self, request, datastore)
    ndim = _bundle_ndim(self.bundle_path)
    kept = [d for d in datalist if _spatial_ndim(d["image"]) in (ndim, None)]
    if len(kept) < len(datalist):
        logger.info(f"{request.get('model')}: training on {len(kept)} labelled {ndim}D studies, leaving out {len(datalist) - len(kept)} of another dimensionality")
    return kept


_bundle_run_train = _train_endpoint.run_model


def _run_train(model, params=None, run_sync=False, enqueue=False):
    trainers = _app_instance()._trainers
    if model not in trainers:
        raise _HTTPException(status_code=404, detail=f"no model '{model}' to train on this server; it trains {sorted(trainers)}")
    _check_train_params(params or {})
    return _bundle_run_train(model, params, run_sync, enqueue)


def _check_train_params(params):
    """422 with one line for a training parameter the bundle's trainer would fail on (MONAI Label answers a 500 from
    inside the training run, or fails the background task), before any training starts."""
    def number(value):
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    epochs = params.get("max_epochs", 1)
    if not (isinstance(epochs, int) and not isinstance(epochs, bool) and epochs > 0):
        raise _HTTPException(status_code=422, detail=f"max_epochs must be a positive whole number of epochs; got {epochs!r}")
    split = params.get("val_split", 0.0)
    if not (number(split) and (0 <= split < 1 or split == -1)):
        raise _HTTPException(status_code=422, detail=f"val_split must be a number in [0, 1) (the share of the labelled "
                                                     f"studies kept for validation; -1: the bundle's own); got {split!r}")


def _check_label(app, image_id, label_path, upload_name):
    """Refuse a label that is not an image, lies off its image's grid or holds values no served model of the image's
    dimensionality uses: 404/422 with one line, before anything is saved."""
    import numpy as np
    from monai.transforms import LoadImage
    from unimiss_monai.utils.errors import failure_reason

    datastore = app.datastore()
    if image_id not in datastore.list_images():
        raise _HTTPException(status_code=404, detail=f"no image '{image_id}' in the datastore; add the image first (PUT /datastore/image)")
    what = f"label {upload_name!r} of image {image_id!r}"
    try:
        label = LoadImage(image_only=True)(label_path)
    except Exception as err:
        reason = failure_reason(err).replace(label_path, upload_name)
        raise _HTTPException(status_code=422, detail=f"{what} is not an image file ({reason}); save it as NIfTI or NRRD on the image's grid") from None
    image = LoadImage(image_only=True)(datastore.get_image_uri(image_id))

    def grid(x):
        shape = list(x.shape)
        while len(shape) > 2 and shape[-1] == 1:
            shape.pop()
        return tuple(shape)

    if grid(label) != grid(image):
        raise _HTTPException(status_code=422, detail=f"{what}: grid {grid(label)} differs from the image's {grid(image)}; save the label on the image's grid")
    offset = float(np.abs(np.asarray(label.affine, np.float64) - np.asarray(image.affine, np.float64)).max())
    if offset > 1e-3:
        raise _HTTPException(status_code=422, detail=f"{what}: its affine (position in space) differs from the image's by up to {offset:.3g}; save the label on the image's grid")
    values = _torch.unique(_torch.as_tensor(label)).double()
    if not bool(_torch.isfinite(values).all()) or not bool((values == values.round()).all()):
        raise _HTTPException(status_code=422, detail=f"{what}: holds non-integer or non-finite values; a label map holds whole numbers")
    names = {}
    for task in app._infers.values():
        if getattr(task, "dimension", None) == len(grid(image)) and isinstance(task.labels, dict):
            names.update({int(v): k for k, v in task.labels.items()})
    top = max(names, default=0)
    wrong = [int(v) for v in values.tolist() if not 0 <= v <= top]
    if wrong:
        known = ", ".join(f"{v} {n}" for v, n in sorted(names.items()))
        raise _HTTPException(status_code=422, detail=f"{what}: values {wrong[:5]} are not labels of this server (0 background, {known})")


_bundle_save_label = _datastore_endpoint.save_label


def _save_label(background_tasks, image, params, tag, label, user=None):
    suffix = "".join(_pathlib.Path(label.filename).suffixes) if label.filename else ".nii.gz"
    with _tempfile.TemporaryDirectory() as folder:
        path = _os.path.join(folder, "label" + suffix)
        with open(path, "wb") as out:
            _shutil.copyfileobj(label.file, out)
        _check_label(_app_instance(), image, path, label.filename or "label")
    label.file.seek(0)
    return _bundle_save_label(background_tasks, image, params, tag, label, user)


MyApp.init_scoring_methods, MyApp.init_strategies, MyApp.infer, MyApp.train = _scoring_methods, _strategies, _infer, _train
_BasicInferTask._get_network, BundleTrainTask._fetch_datalist = _get_network, _fetch_datalist
_train_endpoint.run_model, _datastore_endpoint.save_label = _run_train, _save_label


# /infer off the event loop. MONAI Label's route is ``async def api_run_inference(...): return run_inference(...)``,
# a synchronous call on the loop. A route with the same path, parameters (its signature) and dependencies goes in
# front of it and runs the same function in a worker thread, one inference at a time, as before (the inference tasks
# and their networks are not written for concurrent use). The turn is taken on the loop, through a limiter of one
# token of its own: a request waiting its turn holds no thread of the shared pool (40 threads), which the server's
# file responses and large uploads need as well; were waiting requests to hold them, a queue of 40 inferences would
# stall every download and every finished answer's label behind the whole queue.
import inspect as _inspect
import threading as _threading

import anyio as _anyio
from monailabel.config import settings as _settings
from monailabel.endpoints import infer as _infer_endpoint

_one_inference = _threading.Lock()
_inference_turn = None  # anyio.CapacityLimiter(1), made on the server's event loop at the first request


def _run_inference_serially(background_tasks, model, image, session_id, params, file, label, output):
    with _one_inference:
        return _infer_endpoint.run_inference(background_tasks, model, image, session_id, params, file, label, output)


async def _api_run_inference_in_thread(background_tasks, model, image="", session_id="", params="{}", file=None,
                                       label=None, output=None, user=None):
    global _inference_turn
    if _inference_turn is None:
        _inference_turn = _anyio.CapacityLimiter(1)
    return await _anyio.to_thread.run_sync(_run_inference_serially, background_tasks, model, image, session_id, params,
                                           file, label, output, limiter=_inference_turn)


def _infer_route_off_the_loop():
    from monailabel.app import app as _server

    _api_run_inference_in_thread.__signature__ = _inspect.signature(_infer_endpoint.api_run_inference)
    path = _settings.MONAI_LABEL_API_STR + _infer_endpoint.router.prefix + "/{model}"
    _server.add_api_route(path, _api_run_inference_in_thread, methods=["POST"], tags=["Infer"],
                          summary="Run Inference for supported model (in a worker thread)")
    _server.router.routes.insert(0, _server.router.routes.pop())  # matched before the original route


_infer_route_off_the_loop()
