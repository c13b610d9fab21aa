"""Where the released weights and the official data files live (data, not code paths)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError

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


# --- the paper's benchmarks: label files in the official repository ---------------------------


@dataclass(frozen=True)
class Benchmark:
    """One of the paper's test sets: its label files in the official repository and its protocol."""

    name: str
    taglist: DataFile
    annotations: DataFile
    dialect: str
    image_suffix: str = ""  # what the label names lack to be file names
    descriptions: DataFile | None = None  # open-set tags (LLM descriptions) instead of the vocabulary
    threshold: float | None = None  # the protocol's threshold, where it is not the model's own


def _dataset(folder: str, filename: str, sha256: str) -> DataFile:
    return DataFile(filename.rsplit(".", 1)[0], f"datasets/{folder}/{filename}", sha256)


BENCHMARKS: dict[str, Benchmark] = {
    "openimages_common_214": Benchmark(
        "openimages_common_214",
        _dataset("openimages_common_214", "openimages_common_214_ram_taglist.txt",
                 "3b2ec80fc92178b1e672a087a1e8c034ba3008dcb48dcfa5b2a38641077fc6cb"),
        _dataset("openimages_common_214", "openimages_common_214_ram_annots.txt",
                 "f54429fd57ee9798aee2c7511a28b080998672a91886510ea2e7b60a785ad6cc"),
        "openimages", ".jpg",
    ),
    "openimages_rare_200": Benchmark(
        "openimages_rare_200",
        _dataset("openimages_rare_200", "openimages_rare_200_ram_taglist.txt",
                 "8a173d0132907fa88451de2370d2dc4efee6807b952dfe6eeb9e77eeea2315cf"),
        _dataset("openimages_rare_200", "openimages_rare_200_ram_annots.txt",
                 "6a6f87480aaf86083131c632573c6ea302ca1dced29fbe5274254364fc1305a2"),
        "openimages", ".jpg",
        descriptions=_dataset("openimages_rare_200", "openimages_rare_200_llm_tag_descriptions.json",
                              "b65f1cdf4506df0efe987a8178f06c076e38ea5be5432355a00d12ac0db296e7"),
        threshold=0.5,
    ),
    "imagenet_multi_1000": Benchmark(
        "imagenet_multi_1000",
        _dataset("imagenet_multi", "imagenet_multi_1000_taglist.txt",
                 "571ae1c583b4be7da87519494c52bf405a46af05d5815627c7a0dee997068b60"),
        _dataset("imagenet_multi", "imagenet_multi_1000_annots.txt",
                 "5e67b16d3e207f3af3cd4d2f105442e28e9770a92669d1ee8c11367a85bdfcd4"),
        "indices",
    ),
    "hico_600": Benchmark(
        "hico_600",
        _dataset("hico", "hico_600_taglist.txt", "9154ff557b7c3bd1d3589f5a0fdfa3774ebe8c6e1f205d93a5058f7426303938"),
        _dataset("hico", "hico_600_annots.txt", "68a0f34293550194ca9beb1ba6b0bed0bee134d5c956f286ef09427a484f3707"),
        "indices",
    ),
}


def benchmark(name: str) -> Benchmark:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise UsageError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}") from None
