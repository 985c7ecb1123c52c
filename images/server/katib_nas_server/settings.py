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
