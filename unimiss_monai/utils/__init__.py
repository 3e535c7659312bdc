"""unimiss_monai.utils: step schedules, teacher EMA, seeds, distributed helpers, config-value parsing, weights-only
file loading, lazy and moved names, and the checks and one-line errors of a bundle run's command line.

Names are imported on first use (PEP 562): the package's lazy ``__init__`` files import :mod:`.lazy` from here, which
must not pull in torch.
"""

from unimiss_monai.utils.lazy import lazy_exports

_EXPORTS = {
    "unimiss_monai.utils.args": ("as_bool", "as_count", "choose", "optional_path"),
    "unimiss_monai.utils.ema": ("unwrap_model", "update_momentum"),
    "unimiss_monai.utils.errors": ("failure_reason", "install_error_hook", "root_cause", "user_error_message"),
    "unimiss_monai.utils.finite": ("NonFiniteWeightsError", "first_non_finite", "refuse_non_finite_weights"),
    "unimiss_monai.utils.run_arguments": ("RunArgumentError", "check_run_arguments", "config_ids"),
    "unimiss_monai.utils.schedules": ("cosine_schedule", "momentum_schedule", "optimizer_steps", "scaled_lr",
                                      "teacher_temperature_schedule", "warmup_cosine_schedule"),
    "unimiss_monai.utils.seeds": ("epoch_seed",),
    "unimiss_monai.utils.serialization": ("UnreadableCheckpointError", "UnsafeCheckpointError", "load_torch_file"),
}
_SUBMODULES = ("args", "dist", "ema", "errors", "finite", "lazy", "run_arguments", "schedules", "seeds",
               "serialization", "stop_signal")

__all__ = sorted(name for names in _EXPORTS.values() for name in names)
__getattr__, __dir__ = lazy_exports(
    __name__, {**{n: module for module, names in _EXPORTS.items() for n in names}, **{m: "" for m in _SUBMODULES}}
)
