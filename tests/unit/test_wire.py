import json

import pytest

from workerlib.api import api_root, parse_claim
from workerlib.errors import BadClaim
from workerlib.wire import (
    ImageTask,
    LlmTask,
    build_capabilities,
    content_type_for,
    task_prompt,
)


@pytest.mark.parametrize(
    ("base", "root"),
    [
        ("https://studio.minis.gg", "https://studio.minis.gg/graphics/api"),
        ("https://studio.minis.gg/", "https://studio.minis.gg/graphics/api"),
        ("https://studio.minis.gg/graphics/api", "https://studio.minis.gg/graphics/api"),
        ("https://studio.minis.gg/graphics/api/", "https://studio.minis.gg/graphics/api"),
        ("http://127.0.0.1:9790", "http://127.0.0.1:9790/graphics/api"),
    ],
)
def test_api_root_never_doubles_the_prefix(base: str, root: str) -> None:
    assert api_root(base) == root


CLAIM = {"jobId": "j1", "gameId": "g", "assetName": "game/creatures/t2-golem-stone",
         "model": "synthetic", "vramGbEstimate": 4}


def test_legacy_claim_becomes_an_image_task() -> None:
    claim = parse_claim(json.dumps({**CLAIM, "prompt": "a golem", "ext": "png",
                                    "somethingNew": [1, 2]}).encode())
    task = claim.effective_task()
    assert task == ImageTask(prompt="a golem", width=512, height=512, steps=20, seed=None,
                             ext="png")
    bare = parse_claim(json.dumps(CLAIM).encode()).effective_task()
    assert isinstance(bare, ImageTask) and bare.prompt == "" and bare.ext == "webp"


def test_task_defaults_and_prompts_per_kind() -> None:
    def task_of(task: dict[str, object]) -> object:
        return parse_claim(json.dumps({**CLAIM, "task": task}).encode()).effective_task()

    llm = task_of({"kind": "llm", "messages": [{"role": "user", "content": "hi"},
                                               {"role": "user", "content": "last"}]})
    assert isinstance(llm, LlmTask) and llm.max_tokens == 512 and llm.temperature == 0.7
    assert task_prompt(llm) == "last"  # type: ignore[arg-type]
    assert task_prompt(task_of({"kind": "llm", "messages": []})) == ""  # type: ignore[arg-type]
    stt = task_of({"kind": "audio_stt", "input_url": "https://x/a.wav"})
    assert task_prompt(stt) == "https://x/a.wav"  # type: ignore[arg-type]
    tts = task_of({"kind": "audio_tts", "text": "hello"})
    assert task_prompt(tts) == "hello" and tts.ext == "wav" and tts.voice == "default"  # type: ignore[arg-type,union-attr]
    video = task_of({"kind": "video", "prompt": "spin"})
    assert video.seconds == 2.0 and video.ext == "mp4"  # type: ignore[union-attr]
    image = task_of({"kind": "image", "prompt": "p", "seed": 7})
    assert image.seed == 7 and image.ext == "webp"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("body", "job_id"),
    [
        (b"\xff\xfe not utf8", None),
        (b"not json", None),
        (b"[1, 2]", None),
        (json.dumps({"gameId": "g"}).encode(), None),
        (json.dumps({**CLAIM, "jobId": 5}).encode(), None),
        (json.dumps({**CLAIM, "model": None}).encode(), "j1"),
        (json.dumps({**CLAIM, "task": {"kind": "hologram"}}).encode(), "j1"),
        (json.dumps({**CLAIM, "task": {"kind": "image"}}).encode(), "j1"),
        (json.dumps({**CLAIM, "task": {"kind": "image", "prompt": "p", "width": -3}}).encode(),
         "j1"),
        (b'{"jobId": "j1", "x": ' + b"[" * 100000 + b"]" * 100000 + b"}", None),
    ],
)
def test_bad_claims_are_typed_errors_with_job_id_when_readable(
    body: bytes, job_id: str | None
) -> None:
    with pytest.raises(BadClaim) as err:
        parse_claim(body)
    assert err.value.job_id == job_id
    assert str(err.value)


def test_capabilities_order_sorting_and_override() -> None:
    caps = build_capabilities(
        machine_name="pc", username="me", agent_version="0.2.0", engine="multi",
        vram_total_gb=24.0, vram_threshold_gb=12.0, auto_enabled=True, auto_start=False,
        models_per_kind={"video": ["v"], "image": ["b", "a", "a"], "llm": ["l"]},
    )
    wire = caps.to_wire()
    assert list(wire) == ["machineName", "username", "agentVersion", "engine", "vramTotalGb",
                          "vramThresholdGb", "autoEnabled", "autoStart", "supportedModels",
                          "taskKinds", "supportedModelsPerKind", "onlyWhenIdle"]
    assert wire["onlyWhenIdle"] is False  # and userPresence left out: unknown
    assert wire["taskKinds"] == ["image", "llm", "video"]
    assert list(wire["supportedModelsPerKind"]) == ["image", "llm", "video"]
    assert wire["supportedModelsPerKind"]["image"] == ["a", "b"]
    assert wire["supportedModels"] == ["a", "b", "l", "v"]
    over = build_capabilities(
        machine_name="pc", username="me", agent_version="0.2.0", engine="synthetic",
        vram_total_gb=0, vram_threshold_gb=12.0, auto_enabled=True, auto_start=True,
        models_per_kind={"image": ["synthetic"]}, override=["sdxl", "flux", "sdxl"],
    ).to_wire()
    assert over["supportedModels"] == ["flux", "sdxl"]
    assert over["supportedModelsPerKind"] == {"image": ["flux", "sdxl"]}


def test_capabilities_presence_after_the_v1_keys() -> None:
    wire = build_capabilities(
        machine_name="pc", username="me", agent_version="0.2.0", engine="synthetic",
        vram_total_gb=8, vram_threshold_gb=8, auto_enabled=False, auto_start=True,
        models_per_kind={"image": ["synthetic"]}, only_when_idle=True, user_presence="active",
    ).to_wire()
    assert list(wire)[-2:] == ["onlyWhenIdle", "userPresence"]
    assert wire["onlyWhenIdle"] is True and wire["userPresence"] == "active"


@pytest.mark.parametrize(
    ("ext", "ctype"),
    [("png", "image/png"), ("webp", "image/webp"), ("gif", "image/gif"), ("jpg", "image/jpeg"),
     ("jpeg", "image/jpeg"), ("wav", "audio/wav"), ("mp3", "audio/mpeg"), ("mp4", "video/mp4"),
     ("bin", "application/octet-stream")],
)
def test_content_types(ext: str, ctype: str) -> None:
    assert content_type_for(ext) == ctype
