import re
from pathlib import Path

from workerlib.config import reference_markdown

README = Path(__file__).resolve().parents[2] / "README.md"


def test_config_reference_in_readme_is_current() -> None:
    text = README.read_text()
    match = re.search(r"<!-- config-reference:start -->\n(.*?)<!-- config-reference:end -->",
                      text, re.S)
    assert match, "README lost its config-reference markers"
    assert match.group(1) == reference_markdown(), (
        "README config reference is stale: run scripts/update-readme")


def test_readme_set_up_commands_exist() -> None:
    text = README.read_text()
    for script in ("scripts/demo", "scripts/test"):
        assert script in text
        assert (README.parent / script).stat().st_mode & 0o111


def test_the_readme_config_table_shows_the_real_defaults() -> None:
    """Read the table as a person would (not through reference_markdown): each default
    cell, parsed as TOML, is the default a fresh Config has."""
    import tomllib

    from workerlib.config import Config, field_infos

    config = Config()
    cells: dict[str, str] = {}
    for row in re.findall(r"^\| `([a-z0-9_.]+)` \| [^|]* \| ([^|]*) \|", README.read_text(), re.M):
        cells[row[0]] = row[1].strip()
    names = [info.name for info in field_infos()]
    assert sorted(cells) == sorted(names)
    for name in names:
        value: object = config
        for part in name.split("."):
            value = getattr(value, part)
        cell = cells[name]
        assert cell.startswith("`") and cell.endswith("`"), (name, cell)
        shown = tomllib.loads(f"v = {cell[1:-1]}")["v"]
        if isinstance(value, dict):
            value = dict(value)
        assert shown == value, f"{name}: the README shows {cell}, the default is {value!r}"
