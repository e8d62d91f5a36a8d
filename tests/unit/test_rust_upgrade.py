"""A drop-in upgrade from the Rust worker: its config, where it keeps it on each OS, is
taken over with the registration and every setting intact (README, "Upgrading from the
Rust worker"). The Windows and macOS paths are computed with their rules here; only the
file system under tmp_path is real."""

from __future__ import annotations

from pathlib import Path

import pytest

from workerlib.config import DEFAULT_FEED, ConfigStore
from workerlib.errors import ConfigError
from workerlib.paths import default_config_file, earlier_config_file, rust_config_file

RUST_FEED = "https://api.github.com/repos/webbertakken/studio-worker/releases"

# What the Rust 0.1.x worker writes (serde, toml::to_string_pretty): every key, with its
# defaults, after a registration.
RUST_01X = f"""api_base_url = "https://studio.minis.gg/"
bootstrap_token = "boot-TOKEN-8c1f5e0d7a"
worker_id = "w-rust01"
auth_token = "tok-rust-01-secret"
vram_threshold_gb = 12.0
auto_start = true
auto_enabled = true
engine = "gradio"
gradio_endpoint_url = "http://127.0.0.1:7860"
auto_update_enabled = true
auto_update_interval_secs = 1800
auto_update_feed = "{RUST_FEED}"
auto_update_prerelease = false
supported_models_override = []
"""

# The 0.4.x worker: operator-approved registration, no engine key, more settings.
RUST_04X = f"""api_base_url = "https://studio.minis.gg/"
worker_id = "w-rust04"
auth_token = "tok-rust-04-secret"
vram_threshold_gb = 12.0
auto_start = true
start_minimised = true
auto_update_enabled = true
auto_update_interval_secs = 1800
auto_update_feed = "{RUST_FEED}"
auto_update_prerelease = false
models_root = "/home/ana/models"
ws_reconnect_attempts = 5
local_api_port = 47615
local_api_token = "local-api-secret-0123456789"
install_id = "6f1c1a52-3b1e-4c0e-9d7e-0a4f5b6c7d8e"
"""

PLATFORMS = {
    "linux": (lambda home: {"XDG_CONFIG_HOME": str(home / "xdg")},
              lambda home: home / "xdg" / "minis-studio-worker" / "config.toml"),
    "darwin": (lambda home: {},
               lambda home: home / "Library" / "Application Support"
               / "gg.minis.minis-studio-worker" / "config.toml"),
    "win32": (lambda home: {"APPDATA": str(home / "AppData" / "Roaming"),
                            "LOCALAPPDATA": str(home / "AppData" / "Local")},
              lambda home: home / "AppData" / "Roaming" / "minis" / "minis-studio-worker"
              / "config" / "config.toml"),
}


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_rust_path_per_os(platform: str, tmp_path: Path) -> None:
    env_of, expected = PLATFORMS[platform]
    assert rust_config_file(platform, env_of(tmp_path), tmp_path) == expected(tmp_path)


def test_linux_without_xdg_uses_dot_config(tmp_path: Path) -> None:
    assert rust_config_file("linux", {}, tmp_path) == \
        tmp_path / ".config" / "minis-studio-worker" / "config.toml"
    # A relative XDG_CONFIG_HOME is invalid per the spec and ignored, as `directories` does.
    assert rust_config_file("linux", {"XDG_CONFIG_HOME": "rel"}, tmp_path) == \
        tmp_path / ".config" / "minis-studio-worker" / "config.toml"


def test_windows_without_appdata_falls_back_to_the_profile(tmp_path: Path) -> None:
    assert rust_config_file("win32", {}, tmp_path) == (
        tmp_path / "AppData" / "Roaming" / "minis" / "minis-studio-worker" / "config"
        / "config.toml")


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
@pytest.mark.parametrize(("text", "worker_id", "token"), [
    (RUST_01X, "w-rust01", "tok-rust-01-secret"),
    (RUST_04X, "w-rust04", "tok-rust-04-secret"),
], ids=["0.1.x", "0.4.x"])
def test_a_rust_config_is_picked_up_with_its_registration(
    platform: str, text: str, worker_id: str, token: str, tmp_path: Path
) -> None:
    env_of, _ = PLATFORMS[platform]
    env = env_of(tmp_path)
    rust = rust_config_file(platform, env, tmp_path)
    rust.parent.mkdir(parents=True)
    rust.write_text(text)
    chosen = default_config_file(platform, env, tmp_path)
    assert chosen == rust

    store = ConfigStore(chosen)
    config = store.load()
    assert (config.worker_id, config.auth_token) == (worker_id, token)
    assert config.is_registered()
    assert config.api_base_url == "https://studio.minis.gg/"
    assert config.vram_threshold_gb == 12.0 and config.auto_start is True
    # The Rust releases are not ours: its feed reads as our default.
    assert config.auto_update_feed == DEFAULT_FEED
    if text is RUST_04X:
        assert config.models_root == "/home/ana/models"
        assert config.ws_reconnect_attempts == 5
        assert config.install_id == "6f1c1a52-3b1e-4c0e-9d7e-0a4f5b6c7d8e"
    else:
        assert config.engine == "gradio" and config.bootstrap_token

    # Saving a change keeps every key the Rust worker wrote, ours or not.
    store.update({"vram_threshold_gb": 8.0})
    saved = rust.read_text()
    assert "vram_threshold_gb = 8.0" in saved
    for line in text.splitlines():
        if not line.startswith("vram_threshold_gb"):
            assert line in saved, line


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_new_installs_share_the_rust_place_and_earlier_ones_keep_theirs(
    platform: str, tmp_path: Path
) -> None:
    env = PLATFORMS[platform][0](tmp_path)
    assert default_config_file(platform, env, tmp_path) == rust_config_file(platform, env,
                                                                           tmp_path)
    earlier = earlier_config_file(platform, env, tmp_path)
    earlier.parent.mkdir(parents=True, exist_ok=True)
    earlier.write_text('worker_id = "w-ours"\n')
    assert default_config_file(platform, env, tmp_path) == earlier


@pytest.mark.parametrize(("line", "says"), [
    ('api_base_url = "http://192.168.1.20:3000/"',
     "set allow_insecure_http = true"),
    ('engine = "llama"', 'engine = "llama" is an engine of the Rust worker'),
    ('engine = "whisper"', "set engine to one of synthetic, gradio"),
    ('engine = "image-candle"', "set engine to one of"),
    ('engine = "video"', "set engine to one of"),
    ('engine = "tts"', "set engine to one of"),
])
def test_values_the_rust_worker_took_get_a_one_line_fix(
    line: str, says: str, tmp_path: Path
) -> None:
    path = tmp_path / "config.toml"
    key = line.split(" ", 1)[0]
    rest = "\n".join(k for k in RUST_01X.splitlines() if not k.startswith(key + " "))
    path.write_text(rest + "\n" + line + "\n")
    with pytest.raises(ConfigError) as info:
        ConfigStore(path).load()
    message = str(info.value)
    assert "\n" not in message and says in message and info.value.key == key
    assert message.startswith(str(path))
