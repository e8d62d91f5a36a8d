import os
import stat
import threading
from pathlib import Path

import pytest
import tomlkit
from pydantic import ValidationError

from workerlib.config import Config, ConfigStore, field_infos, mask_secret
from workerlib.errors import ConfigError

USER_FILE = """\
# my worker — keep this comment
api_base_url = "https://studio.example.com"   # the studio
vram_threshold_gb = 10.0
custom_key = "kept"   # unknown to the worker

[extra_table]
x = 1
"""


def test_missing_file_is_created_with_defaults_and_owner_only(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path / "sub" / "config.toml")
    config, created = store.load_or_create()
    assert created
    assert config == Config()
    text = store.path.read_text()
    assert 'engine = "synthetic"' in text
    # Each key is preceded by its description as a comment.
    assert "# Largest job (GiB of VRAM) this worker accepts." in text
    if os.name == "posix":
        assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    _, created_again = store.load_or_create()
    assert not created_again


def test_first_run_clamps_threshold_to_smaller_detected_vram(tmp_path: Path) -> None:
    config, _ = ConfigStore(tmp_path / "a.toml").load_or_create(detected_vram_gb=8.0)
    assert config.vram_threshold_gb == 8.0
    config, _ = ConfigStore(tmp_path / "b.toml").load_or_create(detected_vram_gb=24.0)
    assert config.vram_threshold_gb == 12.0
    config, _ = ConfigStore(tmp_path / "c.toml").load_or_create(detected_vram_gb=0.0)
    assert config.vram_threshold_gb == 12.0


def test_save_keeps_comments_unknown_keys_and_tables(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(USER_FILE)
    store = ConfigStore(path)
    config = store.update({"vram_threshold_gb": 6.5, "auto_enabled": False})
    assert config.vram_threshold_gb == 6.5 and not config.auto_enabled
    text = path.read_text()
    assert "# my worker — keep this comment" in text
    assert "# the studio" in text
    assert 'custom_key = "kept"' in text
    assert "[extra_table]" in text
    assert "vram_threshold_gb = 6.5" in text
    doc = tomlkit.parse(text)
    assert doc["auto_enabled"] is False
    assert store.load().vram_threshold_gb == 6.5


def test_malformed_toml_names_file_and_line_and_is_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    bad = 'api_base_url = "https://x"\nvram_threshold_gb = = 3\n'
    path.write_text(bad)
    store = ConfigStore(path)
    with pytest.raises(ConfigError) as err:
        store.load()
    assert str(path) in str(err.value)
    assert err.value.line == 2
    with pytest.raises(ConfigError):
        store.update({"auto_enabled": False})
    assert path.read_text() == bad


def test_invalid_value_names_key_and_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    bad = '# c\nengine = "synthetic"\nvram_threshold_gb = "lots"\n'
    path.write_text(bad)
    with pytest.raises(ConfigError) as err:
        ConfigStore(path).load()
    assert err.value.key == "vram_threshold_gb"
    assert err.value.line == 3
    assert "vram_threshold_gb" in str(err.value) and str(path) in str(err.value)


def test_update_rejects_invalid_value_and_leaves_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    store = ConfigStore(path)
    store.load_or_create()
    before = path.read_bytes()
    with pytest.raises(ConfigError) as err:
        store.update({"auto_update_interval_secs": 5})
    assert err.value.key == "auto_update_interval_secs"
    with pytest.raises(ConfigError):
        store.update({"api_base_url": "ftp://nope"})
    assert path.read_bytes() == before


def test_non_utf8_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'engine = "synthetic"\nworker_id = "\xff\xfe"\n')
    with pytest.raises(ConfigError) as err:
        ConfigStore(path).load()
    assert "UTF-8" in str(err.value) and err.value.line == 2


def test_changed_on_disk_tracks_external_edits(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path / "config.toml")
    store.load_or_create()
    store.load()
    assert not store.changed_on_disk()
    other = ConfigStore(store.path)
    other.update({"auto_enabled": False})
    assert store.changed_on_disk()
    assert store.load().auto_enabled is False
    assert not store.changed_on_disk()


def test_concurrent_writers_never_lose_keys(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("# keep me\n")
    errors: list[BaseException] = []

    def writer(key: str, values: list[object]) -> None:
        store = ConfigStore(path)
        try:
            for value in values:
                store.update({key: value})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=writer, args=("vram_threshold_gb", [float(i) for i in range(40)])),
        threading.Thread(target=writer, args=("auto_enabled", [i % 2 == 0 for i in range(41)])),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    final = ConfigStore(path).load()
    assert final.vram_threshold_gb == 39.0
    assert final.auto_enabled is True
    assert "# keep me" in path.read_text()
    assert not list(tmp_path.glob(".config.toml.*.tmp"))


def test_failed_write_leaves_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ConfigStore(tmp_path / "config.toml")
    store.load_or_create()
    before = store.path.read_bytes()

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(ConfigError, match="could not be saved"):
        store.update({"vram_threshold_gb": 3.0})
    monkeypatch.undo()
    assert store.path.read_bytes() == before
    assert not list(tmp_path.glob(".config.toml.*.tmp"))


def test_every_field_has_description_and_group() -> None:
    infos = field_infos()
    top = {i.name.split(".")[0] for i in infos}
    assert top == set(Config.model_fields)
    assert "a1111.url" in {i.name for i in infos}
    for info in infos:
        assert info.description, info.name
        assert info.group in {"Connection", "Worker", "Politeness", "Engine", "Auto-update",
                              "Models", "Notifications", "Background mode"}
    secrets = {i.name for i in infos if i.secret}
    assert secrets == {"auth_token", "bootstrap_token", "install_id", "registration_secret"}


def test_defaults_match_the_contract() -> None:
    c = Config()
    assert c.vram_threshold_gb == 12.0
    assert c.engine == "synthetic"
    assert c.auto_update_interval_secs == 1800
    assert c.heartbeat_interval_secs == 5 and c.claim_interval_secs == 5
    assert not c.notify_on_completion and not c.notify_on_failure
    assert not c.autostart_on_login
    assert mask_secret("") == "(not set)"
    assert "abc" not in mask_secret("abcdef")


def test_ensure_private_fixes_group_readable_file(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path / "config.toml")
    store.load_or_create()
    if os.name != "posix":
        pytest.skip("POSIX permissions")
    os.chmod(store.path, 0o644)
    assert store.ensure_private() is True
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.ensure_private() is False


def test_settings_tables_take_dotted_updates_and_keep_comments(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('engine = "synthetic"\n\n[a1111]\n# my forge box\nurl = "http://a:1"\n'
                    '\n[model_map]\n"sdxl-1.0" = "sd_xl_base_1.0.safetensors"\n')
    store = ConfigStore(path)
    config = store.load()
    assert config.a1111.url == "http://a:1"
    assert config.model_map == {"sdxl-1.0": "sd_xl_base_1.0.safetensors"}
    assert config.comfyui.url == "http://127.0.0.1:8188"  # defaults for missing tables
    config = store.update({"a1111.url": "http://b:2", "comfyui.workflow_file": "wf.json"})
    assert config.a1111.url == "http://b:2" and config.comfyui.workflow_file == "wf.json"
    text = path.read_text()
    assert "# my forge box" in text and 'url = "http://b:2"' in text
    config = store.update({"model_map": {"flux": "flux1-dev.safetensors"}})
    assert store.load().model_map == {"flux": "flux1-dev.safetensors"}
    # A full save of an unchanged config writes nothing new.
    before = path.read_text()
    store.save(store.load())
    assert path.read_text() == before


def test_invalid_value_inside_a_table_names_the_dotted_key_and_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('engine = "synthetic"\n[gradio]\napi_name = "/predict"\narg_order = 5\n')
    with pytest.raises(ConfigError) as err:
        ConfigStore(path).load()
    assert err.value.key == "gradio.arg_order" and err.value.line == 4


def test_new_file_has_every_table(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path / "config.toml")
    store.load_or_create()
    text = store.path.read_text()
    for table in ("[model_map]", "[gradio]", "[a1111]", "[comfyui]", "[diffusers]"):
        assert table in text
    assert store.load() == Config()


def test_plain_http_only_to_loopback_unless_allowed(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path / "config.toml")
    store.load_or_create()
    store.update({"api_base_url": "http://127.0.0.1:9790"})
    store.update({"api_base_url": "http://localhost:9790"})
    with pytest.raises(ConfigError) as err:
        store.update({"api_base_url": "http://studio.lan:9790"})
    assert "allow_insecure_http" in str(err.value) and err.value.key == "api_base_url"
    config = store.update({"api_base_url": "http://studio.lan:9790", "allow_insecure_http": True})
    assert config.api_base_url == "http://studio.lan:9790"


@pytest.mark.parametrize("url", ["http://127.evil.example", "http://127.0.0.1.evil.example:80",
                                 "http://localhost.evil.example"])
def test_a_host_that_only_looks_like_loopback_needs_https(url: str) -> None:
    with pytest.raises(ValidationError, match="plain http"):
        Config(api_base_url=url)
    assert Config(api_base_url="http://[::1]:9790").api_base_url == "http://[::1]:9790"
