"""unimiss_monai.utils: step schedules and teacher EMA."""

from unimiss_monai.utils.ema import unwrap_model, update_momentum
from unimiss_monai.utils.schedules import (
    ScheduleCalculator,
    cosine_schedule,
    momentum_schedule,
    teacher_temperature_schedule,
    warmup_cosine_schedule,
)

__all__ = [
    "ScheduleCalculator",
    "cosine_schedule",
    "momentum_schedule",
    "teacher_temperature_schedule",
    "unwrap_model",
    "update_momentum",
    "warmup_cosine_schedule",
]
