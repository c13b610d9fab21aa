"""Shared test set-up: an isolated user cache, no network, and the official tiny fixtures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures"


@dataclass(frozen=True)
class OfficialFixture:
    """A tiny checkpoint run through the official code, with its expected outputs."""

    root: Path

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint.pth"

    @property
    def tags(self) -> Path:
        return self.root / "tags.txt"

    @property
    def tags_zh(self) -> Path:
        return self.root / "tags_chinese.txt"

    @property
    def thresholds(self) -> Path:
        return self.root / "thresholds.txt"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def expected(self) -> dict:
        return json.loads((self.root / "expected.json").read_text(encoding="utf-8"))

    def tagger_kwargs(self) -> dict:
        return {
            "checkpoint": self.checkpoint,
            "tag_list": self.tags,
            "tag_list_zh": self.tags_zh,
            "thresholds": self.thresholds,
        }

    def cli_args(self) -> list[str]:
        return [
            "--checkpoint", str(self.checkpoint),
            "--tag-list", str(self.tags),
            "--tag-list-zh", str(self.tags_zh),
            "--thresholds", str(self.thresholds),
        ]


@pytest.fixture(autouse=True, scope="session")
def cpu_precision_as_everywhere() -> Iterator[None]:
    """``--precision auto`` is bf16-mixed on CPUs with AMX or AVX-512 BF16, and the suite compares
    scores with fp32 references: it runs as on any other CPU (test_precision sets this itself).
    For the whole session, since module- and session-scoped fixtures tag before any function's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAMTAG_NATIVE_BF16", "0")
        yield


@pytest.fixture(autouse=True)
def isolated_user_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every cache at a temporary folder and forbid the network."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("RAMTAG_CACHE", str(home / "ramtag"))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("RAMTAG_OFFLINE", "1")
    monkeypatch.delenv("RAMTAG_DEBUG", raising=False)
    # huggingface_hub reads its environment once, at import: point its constants here as well.
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(home / "hf" / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return home


@pytest.fixture(scope="session")
def ramplus_tiny() -> OfficialFixture:
    return OfficialFixture(FIXTURES / "official_ramplus_tiny")


@pytest.fixture(scope="session")
def ram_tiny() -> OfficialFixture:
    return OfficialFixture(FIXTURES / "official_ram_tiny")


@pytest.fixture
def tiny_tagger(ramplus_tiny: OfficialFixture):
    """The official tiny RAM++ on the CPU in fp32: a real model that runs in milliseconds."""
    from ramtag import load_tagger

    return load_tagger(**ramplus_tiny.tagger_kwargs(), device="cpu", precision="fp32")


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The official repository's benchmark files as file:// URLs: online, but with no network."""
    root = tmp_path / "mirror"
    (root / "datasets").mkdir(parents=True)
    for folder in (SHARED / "ram_data" / "benchmarks").iterdir():
        (root / "datasets" / folder.name).symlink_to(folder)
    monkeypatch.setenv("RAMTAG_DATA_URL", root.as_uri())
    monkeypatch.delenv("RAMTAG_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    return root
