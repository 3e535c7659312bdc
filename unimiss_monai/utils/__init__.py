"""unimiss_monai.utils: step schedules, teacher EMA, config-value parsing, weights-only file loading, and the checks
and one-line errors of a bundle run's command line."""

from unimiss_monai.utils.args import as_bool
from unimiss_monai.utils.ema import unwrap_model, update_momentum
from unimiss_monai.utils.errors import install_error_hook, user_error_message
from unimiss_monai.utils.run_arguments import RunArgumentError, check_run_arguments, config_ids
from unimiss_monai.utils.schedules import (
    ScheduleCalculator,
    cosine_schedule,
    momentum_schedule,
    teacher_temperature_schedule,
    warmup_cosine_schedule,
)
from unimiss_monai.utils.serialization import UnsafeCheckpointError, load_torch_file

__all__ = [
    "RunArgumentError",
    "ScheduleCalculator",
    "UnsafeCheckpointError",
    "as_bool",
    "check_run_arguments",
    "config_ids",
    "cosine_schedule",
    "install_error_hook",
    "load_torch_file",
    "momentum_schedule",
    "teacher_temperature_schedule",
    "unwrap_model",
    "update_momentum",
    "user_error_message",
    "warmup_cosine_schedule",
]
