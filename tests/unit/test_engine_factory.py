"""build_engine: every engine (and multi members) from the whole config; bad settings name
their config key."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

import workerlib.engines.diffusers as diffusers_engine
from workerlib.config import Config
from workerlib.engines import (
    A1111Engine,
    ComfyUIEngine,
    DiffusersEngine,
    EngineConfigError,
    EngineError,
    GradioEngine,
    MultiEngine,
    SyntheticEngine,
    UnknownEngine,
    build_engine,
    create_engine,
)
from workerlib.engines.diffusers import EXTRA_HINT
from workerlib.wire import ImageTask


def test_every_engine_is_built_from_its_config() -> None:
    config = Config(
        engine="multi",
        engines=["a1111", "ComfyUI", "gradio", "diffusers", "synthetic"],
        gradio_endpoint_url="http://127.0.0.1:7861/",
        a1111={"url": "http://127.0.0.1:7862", "negative_prompt": "ugly"},
        comfyui={"url": "http://127.0.0.1:8189"},
        diffusers={"device": "cpu"},
        model_map={"sd15": "v1-5.safetensors"},
        models_root="/nowhere",
    )
    engine = build_engine(config)
    assert isinstance(engine, MultiEngine)
    a1111, comfyui, gradio, diffusers, synthetic = engine.members
    assert isinstance(a1111, A1111Engine) and a1111.url == "http://127.0.0.1:7862"
    assert a1111.settings.negative_prompt == "ugly"
    assert isinstance(comfyui, ComfyUIEngine) and comfyui.url == "http://127.0.0.1:8189"
    assert isinstance(gradio, GradioEngine) and gradio.url == "http://127.0.0.1:7861"
    assert isinstance(diffusers, DiffusersEngine)
    assert diffusers.models_root == Path("/nowhere")
    assert isinstance(synthetic, SyntheticEngine)


@pytest.mark.parametrize("name", ["a1111", "comfyui", "gradio", "diffusers"])
def test_create_engine_builds_the_new_engines_with_defaults(name: str) -> None:
    engine = create_engine(name)
    assert engine.name == name
    assert engine.models_per_kind() == {}  # nothing verified yet: nothing advertised


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"engine": "gradio", "gradio_endpoint_url": "127.0.0.1:7860"}, "gradio_endpoint_url"),
        ({"engine": "gradio", "gradio": {"arg_order": ["model"]}}, "gradio.arg_order"),
        ({"engine": "gradio", "gradio": {"arg_order": ["prompt", "cfg"]}}, "gradio.arg_order"),
        ({"engine": "gradio", "gradio": {"api_name": "/"}}, "gradio.api_name"),
        ({"engine": "a1111", "a1111": {"url": "ftp://host"}}, "a1111.url"),
        ({"engine": "comfyui", "comfyui": {"url": ""}}, "comfyui.url"),
        ({"engine": "comfyui", "comfyui": {"workflow_file": "/no/such/flow.json"}},
         "comfyui.workflow_file"),
        ({"engine": "diffusers", "diffusers": {"device": "tpu"}}, "diffusers.device"),
        ({"engine": "diffusers", "diffusers": {"dtype": "int8"}}, "diffusers.dtype"),
        ({"engine": "multi", "engines": ["synthetic", "a1111"], "a1111": {"url": "nope"}},
         "a1111.url"),
        ({"engine": "multi", "engines": []}, "engines"),
        ({"engine": "multi", "engines": ["multi"]}, "engines"),
    ],
)
def test_bad_settings_name_their_config_key(config: dict[str, Any], key: str) -> None:
    with pytest.raises(EngineConfigError) as info:
        build_engine(Config(**config))
    assert info.value.key == key
    assert f"'{key}'" in str(info.value)


def test_unknown_names_list_the_known_engines() -> None:
    with pytest.raises(UnknownEngine) as info:
        build_engine(Config(engine="automatic"))
    assert info.value.key == "engine"
    for name in ("a1111", "comfyui", "diffusers", "gradio", "synthetic", "multi"):
        assert name in str(info.value)
    with pytest.raises(UnknownEngine) as info:
        build_engine(Config(engine="multi", engines=["gradio", "forge"]))
    assert info.value.key == "engines" and "forge" in str(info.value)


def test_importing_config_first_does_not_loop() -> None:
    """config imports engines.settings, which runs engines/__init__ first."""
    import subprocess

    code = "import workerlib.config, workerlib.engines as e; print(e.build_engine.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "build_engine"


def test_the_engines_do_not_import_the_heavy_packages() -> None:
    import subprocess

    code = ("import sys, workerlib.engines; "
            "print(sorted(m for m in ('torch', 'diffusers', 'gradio_client', 'gradio') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


# --- diffusers without its extra --------------------------------------------------------


@pytest.fixture
def no_diffusers(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry makes both find_spec and import see the package as absent.
    monkeypatch.setitem(sys.modules, "diffusers", None)
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")


async def test_diffusers_without_its_extra_says_what_to_install(
    no_diffusers: None, tmp_path: Path
) -> None:
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "model_index.json").write_text("{}")
    engine = DiffusersEngine(tmp_path, model_map={"studio-tiny": "tiny"})
    problem = await engine.check()
    assert problem is not None and "diffusers" in problem and EXTRA_HINT in problem
    with pytest.raises(EngineError) as info:
        await engine.generate("studio-tiny", ImageTask(prompt="x"), lambda _f: None)
    assert EXTRA_HINT in str(info.value)


async def test_diffusers_check_explains_a_missing_or_empty_models_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(diffusers_engine, "dependencies_missing", lambda: [])
    unset = DiffusersEngine("")
    assert "models_root" in (await unset.check() or "")
    missing = DiffusersEngine(tmp_path / "absent")
    assert "does not exist" in (await missing.check() or "")
    empty = DiffusersEngine(tmp_path, model_map={"x": "folder-x"})
    problem = await empty.check()
    assert problem is not None and "model_index.json" in problem and "folder-x" in problem
