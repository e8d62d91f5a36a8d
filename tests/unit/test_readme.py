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
