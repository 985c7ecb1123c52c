"""Server settings from environment variables, checked once at start: a bad value stops the server
with one line naming the variable and the fix, before it binds a port."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(Exception):
    """Bad server configuration; one line per problem."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    model_dir: Path = Field(
        description="Experiment directory holding best.json (the server follows the pointer), "
        "or one complete trial record directory (served as is)."
    )
    model_name: str = Field(
        "katib-nas",
        pattern=r"^[a-z0-9]([-a-z0-9._]{0,61}[a-z0-9])?$",
        description="Name clients use in /v2/models/{name}.",
    )
    reload_interval: float = Field(5.0, gt=0, le=3600, description="Seconds between checks of best.json.")
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="Largest request body accepted.")
    max_batch: int = Field(4096, ge=1, description="Most rows in one request.")
    # The limits below bound what one request can cost; README.md's cost model explains the defaults.
    max_json_items: int = Field(
        1024 * 1024, ge=1024, description="Most JSON values (array items and object members) in one body."
    )
    max_image_pixels: int = Field(
        16 * 1024 * 1024, ge=64, description="Most pixels an uploaded picture may decode to (JPEG decodes scaled down)."
    )
    max_header_bytes: int = Field(16 * 1024, ge=1024, description="Largest request head (request line and headers).")
    read_timeout: float = Field(
        10.0, gt=0, le=600, description="Seconds a client has to send a request head, and then its body."
    )
    max_concurrent_requests: int = Field(
        2, ge=1, le=64, description="Inference requests with large bodies or pictures processed at once."
    )
    max_queued_requests: int = Field(
        32, ge=0, description="Such requests waiting for a turn; more get 503 with Retry-After."
    )
    max_connections: int = Field(512, ge=8, description="Open client connections; over it the longest idle closes.")
    intra_op_threads: int = Field(1, ge=1, le=256, description="onnxruntime threads per inference.")

    @field_validator("model_dir")
    @classmethod
    def _is_directory(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"{value} is not a directory; point it at the experiment's directory on the model volume")
        return value


def load_settings() -> Settings:
    try:
        return Settings()  # model_dir comes from the environment
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            variable = "_".join(str(part) for part in error["loc"]).upper()
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "missing":
                message = "not set; export it (for example MODEL_DIR=/models/<experiment>)"
            lines.append(f"server settings: {variable}: {message}")
        raise SettingsError("\n".join(lines)) from None
