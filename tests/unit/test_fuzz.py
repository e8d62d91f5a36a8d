"""Hostile input never crashes the worker: property-based tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workerlib.api import parse_claim
from workerlib.config import Config, ConfigStore
from workerlib.errors import BadClaim, ConfigError
from workerlib.wire import JobClaim

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=20,
)
VALID = {"jobId": "j-1", "gameId": "g", "assetName": "a/b", "model": "synthetic",
         "vramGbEstimate": 1.5, "task": {"kind": "image", "prompt": "p"}}
KEYS = [*VALID, "prompt", "ext"]


def _check(body: bytes) -> None:
    try:
        claim = parse_claim(body)
    except BadClaim as exc:
        assert str(exc)
        if exc.job_id is not None:
            assert isinstance(exc.job_id, str) and exc.job_id.strip()
        return
    assert isinstance(claim, JobClaim)
    claim.effective_task()


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), json_values, max_size=8))
def test_random_claim_objects_are_a_claim_or_a_bad_claim(payload: dict[str, Any]) -> None:
    _check(json.dumps(payload).encode())


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(KEYS), json_values, st.booleans())
def test_one_mutated_key_of_a_valid_claim(key: str, value: Any, drop: bool) -> None:
    payload = dict(VALID)
    if drop:
        payload.pop(key, None)
    else:
        payload[key] = value
    body = json.dumps(payload).encode()
    try:
        parse_claim(body)
    except BadClaim as exc:
        # A readable job id is always reported, so the studio hears about the bad job.
        if isinstance(payload.get("jobId"), str) and payload["jobId"].strip():
            assert exc.job_id == payload["jobId"]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes(body: bytes) -> None:
    _check(body)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=6), json_values, max_size=6))
def test_random_tasks(task: dict[str, Any]) -> None:
    _check(json.dumps({**VALID, "task": task}).encode())


def test_huge_and_deep_payloads() -> None:
    _check(json.dumps({**VALID, "task": {"kind": "image", "prompt": "x" * 3_000_000}}).encode())
    _check(b'{"jobId": "deep", "task": ' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}")


toml_fragments = st.sampled_from([
    'engine = "synthetic"\n', "vram_threshold_gb = 8\n", "vram_threshold_gb = -1\n",
    'vram_threshold_gb = "x"\n', "[a1111]\n", 'url = "http://x"\n', "auto_enabled = maybe\n",
    "engines = [1, 2]\n", "[model_map]\n", '"sdxl" = "a.safetensors"\n', "= = =\n", "[[x]]\n",
    'api_base_url = "http://10.0.0.1"\n', "claim_interval_secs = inf\n", "# comment\n",
    "\x00", '"unterminated\n', "heartbeat_interval_secs = 0\n",
])


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(toml_fragments, max_size=8) | st.text(max_size=120).map(lambda t: [t]))
def test_fuzzed_config_files_load_or_fail_clearly_and_are_never_rewritten(
    tmp_path: Path, parts: list[str]
) -> None:
    path = tmp_path / "config.toml"
    raw = "".join(parts).encode("utf-8", "surrogatepass")
    path.write_bytes(raw)
    store = ConfigStore(path)
    try:
        config = store.load()
    except ConfigError as exc:
        assert str(path) in str(exc)
        try:
            store.update({"auto_enabled": False})
        except ConfigError:
            pass
        else:  # pragma: no cover - a bad file must never be saved over
            raise AssertionError("an invalid file was rewritten")
        assert path.read_bytes() == raw
    else:
        assert isinstance(config, Config)
