"""The shape of the code: no import cycle, small modules, and mistakes found before torch is loaded."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "ramtag"
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every ramtag module ``name`` imports when it runs, at module level or inside functions
    (what a type checker alone reads, under ``if TYPE_CHECKING:``, is left out)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    # A module's own packages are imported before it whatever it says (``from .. import x``).
    ancestors = {".".join(name.split(".")[:n]) for n in range(1, name.count(".") + 1)}
    return {module for module in found if module in modules and module != name and module not in ancestors}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_no_import_cycles_among_ramtags_modules() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert graph["ramtag.engine.runner"] >= {"ramtag.pipeline"}  # the analysis sees real imports
    assert "ramtag.engine.runner" in graph["ramtag.tagger"]  # ... including those inside functions
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_modules_stay_small() -> None:
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in _modules().items()}
    assert {name: lines for name, lines in sizes.items() if lines > MAX_LINES} == {}


HEAVY = ("torch", "timm", "transformers", "pyarrow", "ray")


def _fails_fast(tmp_path: Path, *args: str, watch: tuple[str, ...] = HEAVY, command: str = "run") -> tuple[int, str, list[str]]:
    """``ramtag run ARGS`` in a fresh interpreter: exit code, stderr, and which of ``watch`` it imported."""
    script = (
        "import sys\n"
        "from ramtag.cli.app import main\n"
        f"sys.argv = ['ramtag', *{[command] if command else []!r}, *{list(args)!r}]\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    code = exit.code\nelse:\n    code = 0\n"
        f"heavy = [m for m in {watch!r} if m in sys.modules]\n"
        "print(repr(heavy), file=sys.stdout)\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    return done.returncode, done.stderr, ast.literal_eval(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["photos", "--device", "gpu"], "unknown device 'gpu'; use auto, cpu, cuda, cuda:N or mps"),
        (["photos", "--checkpoint", "missing.pth"], "--checkpoint missing.pth: not found; check the path"),
        (["photos", "--precision", "int4"], "unknown precision 'int4'"),
        (["photos", "--precision", "int8", "--device", "cuda"], "runs on CPUs only"),
        (["photos", "--model", "ram3"], "unknown model 'ram3'"),
        (["photos", "--out", "photos/a.jpg/tags.parquet"], "photos/a.jpg is a file, not a folder"),
        (["photos", "--address", "auto"], "go with --engine ray"),
        (["nothing-here"], "input not found: nothing-here"),
        (["photos", "--engine", "ray"], "--engine ray writes a folder of Parquet parts: add --out FOLDER"),
        (["photos", "--xmp", "--engine", "ray", "--out", "tags"], "--xmp is not available with --engine ray"),
        (["shards/{a,b}.tar", "--xmp"], "--xmp writes sidecars beside image files; tar shards and URLs have none"),
        (["shards/{a,b}.tar", "--embed"], "--embed writes into image files; tar shards and URLs are not files"),
        (["photos", "--touch"], "--touch goes with --embed"),
    ],
)
def test_mistakes_fail_before_torch_is_imported(tmp_path: Path, args: list[str], words: str) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"")
    (tmp_path / "shards").mkdir()
    for name in ("a.tar", "b.tar"):
        (tmp_path / "shards" / name).write_bytes(b"")
    code, stderr, heavy = _fails_fast(tmp_path, *args)
    assert code == 2, stderr  # one exit code for every usage mistake
    assert stderr.startswith("error:") and words in stderr and stderr.count("\n") == 1, stderr
    assert heavy == []


def test_mistakes_in_the_vocabulary_files_fail_before_torch_is_imported(tmp_path: Path, ramplus_tiny) -> None:
    """--only-tags names, a thresholds file, --lang without Chinese names: said after 4-8 s of
    imports before; and `ramtag describe` alone imported torch to say it had no tags."""
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"")
    (tmp_path / "short.txt").write_text("high\n")
    model = ["--checkpoint", str(ramplus_tiny.root / "checkpoint.pth"), "--tag-list", str(ramplus_tiny.root / "tags.txt")]
    for args, code, words in [
        (["--only-tags", "nosuchtag"], 2, "--only-tags: not in the model's vocabulary: 'nosuchtag'"),
        (["--thresholds", str(tmp_path / "short.txt")], 1, "short.txt"),
        (["--threshold", "0.5", "--lang", "zh"], 2, "--lang zh needs Chinese tag names"),
    ]:
        done, stderr, heavy = _fails_fast(tmp_path, "photos", *model, *args)
        assert done == code and words in stderr and stderr.count("\n") == 1, stderr
        assert heavy == []
    done, stderr, heavy = _fails_fast(tmp_path, command="describe")
    assert done == 2 and "no tags to describe" in stderr and heavy == []


@pytest.mark.parametrize(("command", "args"), [("run", ["--bogus"]), ("run", ["photos", "--batch-size", "x"]),
                                             ("eval", ["--help"]), ("", ["--help"]), ("", ["--version"])])
def test_the_command_line_is_parsed_without_numpy_pillow_or_the_evaluation(
    tmp_path: Path, command: str, args: list[str]
) -> None:
    # what --help, --version and option errors import decides how fast they answer
    watch = (*HEAVY, "numpy", "PIL", "pandas", "ramtag.evaluation", "ramtag.inputs.decode")
    code, stderr, heavy = _fails_fast(tmp_path, *args, watch=watch, command=command)
    assert code in (0, 2), stderr
    assert heavy == []


@pytest.mark.parametrize(("command", "args", "watch"), [("run", ["--bogus"], ("pydantic", "ramtag.cli.eval")),
                                                     ("eval", ["--bogus"], ("pydantic", "ramtag.cli.run")),
                                                     ("models", ["list", "--bogus"], ("ramtag.cli.serve",))])
def test_an_unknown_option_is_answered_by_its_command_alone(
    tmp_path: Path, command: str, args: list[str], watch: tuple[str, ...]
) -> None:
    # no other command's module, and no flag for Typer to convert (its conversion imports Pydantic);
    # a group such as `models` has its own -h, converted before its command is parsed
    code, stderr, heavy = _fails_fast(tmp_path, *args, watch=watch, command=command)
    assert code == 2 and "No such option: --bogus" in stderr, stderr
    assert heavy == []


def test_a_job_travels_as_json() -> None:
    from ramtag.engine.job import ClusterOptions, InputOptions, Job, ModelOptions, OutputOptions, ResultOptions

    job = Job(
        inputs=InputOptions(paths=("a", "s3://b/{0..3}.tar"), include=("*.jpg",), hidden=True, max_pixels=None),
        model=ModelOptions(kind="ram", checkpoint="w.pth", threshold=0.5, device="cuda:1", precision="fp16", only_tags=("cat", "dog")),
        results=ResultOptions(top_k=3, draft_decode=True, raw_decode="demosaic"),
        outputs=OutputOptions(out="tags", lang="both", all_scores=True),
        cluster=ClusterOptions(engine="ray", num_gpus_per_worker=0.5), batch_size=64, workers=3,
    )
    assert Job.from_json(job.to_json()) == job
    assert json.loads(job.to_json())["results"] == {
        "top_k": 3, "draft_decode": True, "raw_decode": "demosaic", "preprocess": "pillow", "ignore_orientation": False
    }
    on_gpu = job.replace(results=ResultOptions(preprocess="gpu"))
    assert Job.from_json(on_gpu.to_json()) == on_gpu
