"""Where the released weights and the official data files live (data, not code paths)."""

from __future__ import annotations

from dataclasses import dataclass

OFFICIAL_REPO = "xinyu1205/recognize-anything"
OFFICIAL_COMMIT = "7cb804a8609e9f4b1a50b7f31436d2df40bb9481"
RAW_URL = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"


@dataclass(frozen=True)
class WeightsSource:
    """A released checkpoint on the Hugging Face Hub."""

    name: str
    kind: str
    repo_id: str
    filename: str
    repo_type: str = "model"
    config: str = ""

    @property
    def display(self) -> str:
        prefix = "spaces/" if self.repo_type == "space" else ""
        return f"hf://{prefix}{self.repo_id}/{self.filename}"


@dataclass(frozen=True)
class DataFile:
    """A file of the official repository, pinned by commit and sha256."""

    name: str
    path: str
    sha256: str

    @property
    def url(self) -> str:
        return RAW_URL.format(repo=OFFICIAL_REPO, commit=OFFICIAL_COMMIT, path=self.path)

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]


WEIGHTS: dict[str, WeightsSource] = {
    "ram_plus": WeightsSource(
        name="ram_plus",
        kind="ram_plus",
        repo_id="xinyu1205/recognize-anything-plus-model",
        filename="ram_plus_swin_large_14m.pth",
        config="ram_plus_swin_large_14m",
    ),
    "ram": WeightsSource(
        name="ram",
        kind="ram",
        repo_id="xinyu1205/Recognize_Anything-Tag2Text",
        filename="ram_swin_large_14m.pth",
        repo_type="space",
        config="ram_swin_large_14m",
    ),
}

DATA_FILES: dict[str, DataFile] = {
    "tag_list": DataFile(
        "tag_list",
        "ram/data/ram_tag_list.txt",
        "5d96d2f7225527480ad773aaac76b6e5c08a18adf6eae9ca7d2ab923d5e7bd8b",
    ),
    "tag_list_zh": DataFile(
        "tag_list_zh",
        "ram/data/ram_tag_list_chinese.txt",
        "c912657a0f30be7b2f5df6ccffa17e1d84561d0bea508528e38b6d0d711bcfbe",
    ),
    "thresholds": DataFile(
        "thresholds",
        "ram/data/ram_tag_list_threshold.txt",
        "b6f81d0de1bc7f9c251af512c413eae976c77dbfbadf700d4e3d90510f4c6447",
    ),
}
