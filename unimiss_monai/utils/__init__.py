"""unimiss_monai.utils: step schedules, teacher EMA, config-value parsing and weights-only file loading."""

from unimiss_monai.utils.args import as_bool
from unimiss_monai.utils.ema import unwrap_model, update_momentum
from unimiss_monai.utils.schedules import (
    ScheduleCalculator,
    cosine_schedule,
    momentum_schedule,
    teacher_temperature_schedule,
    warmup_cosine_schedule,
)
from unimiss_monai.utils.serialization import UnsafeCheckpointError, load_torch_file

__all__ = [
    "ScheduleCalculator",
    "UnsafeCheckpointError",
    "as_bool",
    "cosine_schedule",
    "load_torch_file",
    "momentum_schedule",
    "teacher_temperature_schedule",
    "unwrap_model",
    "update_momentum",
    "warmup_cosine_schedule",
]
