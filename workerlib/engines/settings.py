"""Per-engine settings: each is its own table in ``config.toml`` (``[a1111]``, ...)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

GRADIO_ARGUMENTS: tuple[str, ...] = ("prompt", "model", "width", "height", "steps", "seed")
"""What ``[gradio].arg_order`` may name: the values the engine can pass to the app."""


class _Table(BaseModel):
    model_config = ConfigDict(extra="ignore", validate_assignment=True)


class SyntheticSettings(_Table):
    delay_secs: float = Field(
        0.0, ge=0, le=3600,
        description="Seconds each synthetic job takes, to watch the pipeline at work.",
    )


class GradioSettings(_Table):
    api_name: str = Field("/predict", description="Gradio endpoint to call (api_name).")
    arg_order: list[str] = Field(
        ["prompt", "model"],
        description="Arguments passed to the endpoint, in order (prompt, model, width, height, "
        "steps, seed; seed is -1 when the job has none).",
    )
    models: list[str] = Field(
        [],
        description="Studio model ids the Gradio app serves (model_map may rename them); "
        "empty: every id in model_map.",
    )
    timeout_secs: float = Field(
        30.0, ge=1, le=3600,
        description="Seconds to wait for the Gradio app to answer a request (not the job).",
    )


class A1111Settings(_Table):
    url: str = Field(
        "http://127.0.0.1:7860", description="Address of the AUTOMATIC1111/Forge web UI."
    )
    negative_prompt: str = Field("", description="Negative prompt sent with every job.")
    cfg_scale: float = Field(7.0, ge=0, le=100, description="Guidance (CFG) scale.")
    sampler_name: str = Field("", description="Sampler to use; empty: the web UI's default.")
    timeout_secs: float = Field(
        30.0, ge=1, le=3600,
        description="Seconds to wait for the web UI to answer a request (not the job).",
    )


class ComfyUISettings(_Table):
    url: str = Field("http://127.0.0.1:8188", description="Address of ComfyUI.")
    workflow_file: str = Field(
        "", description="Your own API-format workflow (JSON) with the same placeholders; "
        "empty uses the built-in text-to-image workflow."
    )
    negative_prompt: str = Field(
        "", description="Negative prompt: fills {{negative_prompt}} in the workflow."
    )
    cfg_scale: float = Field(
        7.0, ge=0, le=100, description="Guidance (CFG) scale: fills {{cfg}} in the workflow."
    )
    timeout_secs: float = Field(
        30.0, ge=1, le=3600,
        description="Seconds to wait for ComfyUI to answer a request (not the job).",
    )


class DiffusersSettings(_Table):
    device: str = Field("auto", description="Device for diffusers pipelines: auto, cuda or cpu.")
    dtype: str = Field(
        "auto", description="Weights precision: auto (float16 on CUDA, else float32), float16, "
        "bfloat16 or float32."
    )
    negative_prompt: str = Field("", description="Negative prompt sent with every job.")
    guidance_scale: float = Field(
        7.5, ge=0, le=100, description="Guidance scale of the diffusers pipeline."
    )
    compile: bool = Field(
        False, description="Opt-in: torch.compile the pipeline's denoiser when it loads (the "
        "first job waits for the compilation; later ones may run faster on a GPU)."
    )
    channels_last: bool = Field(
        False, description="Opt-in: channels-last memory layout for the denoiser and the VAE "
        "(often faster on NVIDIA tensor cores)."
    )
    fuse_qkv: bool = Field(
        False, description="Opt-in: fuse the attention's query, key and value projections "
        "where the pipeline supports it (attention itself already uses PyTorch's fused SDPA)."
    )
