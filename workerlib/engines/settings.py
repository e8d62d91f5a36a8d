"""Per-engine settings: each is its own table in ``config.toml`` (``[a1111]``, ...)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Table(BaseModel):
    model_config = ConfigDict(extra="ignore", validate_assignment=True)


class GradioSettings(_Table):
    api_name: str = Field("/predict", description="Gradio endpoint to call (api_name).")
    arg_order: list[str] = Field(
        ["prompt", "model"],
        description="Arguments passed to the endpoint, in order (prompt, model, width, height, "
        "steps, seed).",
    )


class A1111Settings(_Table):
    url: str = Field(
        "http://127.0.0.1:7860", description="Address of the AUTOMATIC1111/Forge web UI."
    )


class ComfyUISettings(_Table):
    url: str = Field("http://127.0.0.1:8188", description="Address of ComfyUI.")
    workflow_file: str = Field(
        "", description="Your own API-format workflow (JSON) with the same placeholders; "
        "empty uses the built-in text-to-image workflow."
    )


class DiffusersSettings(_Table):
    device: str = Field("auto", description="Device for diffusers pipelines: auto, cuda or cpu.")
