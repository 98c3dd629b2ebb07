"""The job contract's types that a run's own records hold, in the lowest layer that needs them.

`StoreSpec` says where a run lives (every job spec names it, and so does the `Run`);
`AUTO_DEVICE` is the device a config leaves to each job's machine;
`TrainJobResult` is what a training job returns and what the driver records as the
training's ``result.json`` (`pec.runs.run_records` reads it back). The job layer
(`pec.jobs.spec`) builds its specs from them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from pec.maths.curriculum import MAX_LEVEL

if TYPE_CHECKING:
    from pec.runs.store import Store


# A job spec's device that each machine resolves for itself (cuda:0 where CUDA is, else cpu;
# pec.backends.base.resolve_device), so one run's jobs can land on GPU and CPU hosts alike.
AUTO_DEVICE = "auto"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StoreSpec(_Strict):
    """Where the run lives; enough to reopen the store anywhere the credentials are set."""

    location: str = Field(min_length=1)  # "s3://bucket/prefix" or a local folder
    endpoint_url: str | None = None
    region: str | None = None

    def open(self) -> Store:
        """Open the store; S3 credentials come from AWS_ACCESS_KEY_ID etc. (boto3's chain)."""
        from pec.runs.store import S3Settings, open_store  # lazy: parsing a spec needs no boto3

        if self.location.startswith("s3://"):
            settings = S3Settings.from_env()  # PEC_S3_* defaults; the spec's values win
            if self.endpoint_url is not None:
                settings.endpoint_url = self.endpoint_url
            if self.region is not None:
                settings.region = self.region
            return open_store(self.location, settings)
        return open_store(self.location)


class TrainJobResult(_Strict):
    """Small enough to persist as a Prefect result: URIs and scalar metrics only."""

    checkpoint_uri: str  # model_best.pt; only reported when the object exists in the store
    last_checkpoint_uri: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    log_uri: str
    warning: str | None = None  # set when the trainer crashed after writing a checkpoint
    # The starting obstacle level the training used; the driver records it in result.json
    # (a job's own result leaves it out, and a None is never serialised).
    dl: int | None = Field(default=None, ge=0, le=MAX_LEVEL, exclude_if=lambda value: value is None)
