"""docs/configuration.md is what scripts/configuration_doc.py prints; every setting is described."""

from __future__ import annotations

import importlib.util
from dataclasses import field, fields, make_dataclass
from pathlib import Path

import pytest

from gateway.platform.config import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def generator():
    spec = importlib.util.spec_from_file_location(
        "configuration_doc", ROOT / "scripts" / "configuration_doc.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_page_is_the_generators_output(generator):
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == generator.render(), (
        "docs/configuration.md is out of date: "
        "python scripts/configuration_doc.py > docs/configuration.md"
    )


def test_every_setting_has_its_variable_default_and_description():
    for setting in fields(Settings):
        assert set(setting.metadata) == {"env", "default", "description"}, setting.name
        assert all(setting.metadata.values()), setting.name


def test_every_variable_is_named_once():
    names = [setting.metadata["env"] for setting in fields(Settings)]
    assert len(names) == len(set(names))


def test_a_setting_without_a_description_fails_the_generator(generator, monkeypatch):
    undocumented = make_dataclass("Undocumented", [("new_setting", int, field(default=1))])
    monkeypatch.setattr(generator, "Settings", undocumented)
    with pytest.raises(ValueError, match="new_setting"):
        generator.render()


def test_each_variable_is_read_by_from_env():
    source = (ROOT / "gateway" / "platform" / "config.py").read_text()
    body = source[source.index("def from_env") : source.index("def __post_init__")]
    missing = [s.metadata["env"] for s in fields(Settings) if f'"{s.metadata["env"]}"' not in body]
    assert missing == []
