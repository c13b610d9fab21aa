"""The CPU precision policy: native-bf16 detection, the bf16-mixed recipe, and what ``auto`` says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from ramtag import load_tagger
from ramtag.cli.app import app
from ramtag.cpu import bf16_feature, native_bf16, parse_flags
from ramtag.inputs import decode_image
from ramtag.model.mixed import Island
from ramtag.outputs.schema import METADATA_KEY
from ramtag.precision import resolve, why_auto

SAPPHIRE_RAPIDS = frozenset("fpu sse2 avx2 avx512f avx512bw avx512_bf16 amx_bf16 amx_tile amx_int8".split())
ICE_LAKE = frozenset("fpu sse2 avx2 avx512f avx512bw avx512_vnni".split())
COOPER_LAKE = frozenset("fpu sse2 avx2 avx512f avx512bw avx512_bf16".split())
EPYC_ZEN2 = frozenset("fpu sse2 avx2 fma".split())


def test_native_bf16_is_read_from_the_cpu_flags_and_capped_by_onednn() -> None:
    assert bf16_feature(SAPPHIRE_RAPIDS) == "AMX"
    assert bf16_feature(COOPER_LAKE) == "AVX-512 BF16"
    assert bf16_feature(ICE_LAKE) is None and bf16_feature(EPYC_ZEN2) is None
    # oneDNN told not to use AMX still has AVX-512 BF16; told to stop at AVX2 it has neither
    assert bf16_feature(SAPPHIRE_RAPIDS, "AVX512_CORE_BF16") == "AVX-512 BF16"
    assert bf16_feature(SAPPHIRE_RAPIDS, "avx2") is None
    assert bf16_feature(SAPPHIRE_RAPIDS, "ALL") == "AMX"  # not a level: no cap


def test_the_flags_come_from_the_first_processor_of_cpuinfo() -> None:
    text = "processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu avx2 amx_bf16 amx_tile\n\nprocessor\t: 1\nflags\t: fpu\n"
    assert parse_flags(text) == {"fpu", "avx2", "amx_bf16", "amx_tile"}
    assert parse_flags("processor : 0\nFeatures : fp asimd bf16\n") == frozenset()  # not x86: none claimed


def test_the_environment_overrides_what_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAMTAG_NATIVE_BF16", "1")
    assert native_bf16() == "RAMTAG_NATIVE_BF16=1"
    monkeypatch.setenv("RAMTAG_NATIVE_BF16", "0")
    assert native_bf16() is None


def test_auto_is_bf16_mixed_only_on_cpus_with_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAMTAG_NATIVE_BF16", "1")
    mixed = resolve("auto", torch.device("cpu"))
    assert mixed.name == "bf16-mixed" and mixed.dtype is torch.float32 and mixed.bf16_islands
    assert "RAMTAG_NATIVE_BF16=1" in why_auto(mixed, "cpu") and "--precision fp32" in why_auto(mixed, "cpu")
    assert resolve("auto", "cuda").name == "fp16"  # GPUs are not asked about
    assert resolve("auto", "cpu", detect=False).name == "fp32"  # Ray's driver: its CPU is not the cluster's
    monkeypatch.setenv("RAMTAG_NATIVE_BF16", "0")
    exact = resolve("auto", torch.device("cpu"))
    assert exact.name == "fp32" and "RAMTAG_NATIVE_BF16=0" in why_auto(exact, "cpu")
    monkeypatch.delenv("RAMTAG_NATIVE_BF16")
    found = resolve("auto", "cpu")  # this machine, whatever it is: the same answer as the detection
    assert found.name == ("bf16-mixed" if native_bf16() else "fp32")


def test_bf16_mixed_computes_chosen_blocks_in_bf16_and_stays_closer_to_fp32_than_bf16(ramplus_tiny) -> None:
    taggers = {name: load_tagger(**ramplus_tiny.tagger_kwargs(), device="cpu", precision=name)
               for name in ("fp32", "bf16-mixed", "bf16")}
    mixed = taggers["bf16-mixed"].model
    islands = [module for module in mixed.modules() if isinstance(module, Island)]
    stages = mixed.image_encoder.swin.layers
    assert len(stages) == 4
    early = [block.mlp for stage in stages[:2] for block in stage.blocks]
    assert {id(island) for island in islands} == {id(m) for m in early} | {id(layer.ffn) for layer in mixed.decoder.layers}
    assert {type(island.inner).__name__ for island in islands} == {"Mlp", "FeedForward"}
    assert not any(isinstance(block.mlp, Island) for stage in stages[2:] for block in stage.blocks)
    # (state dicts: packed linear layers hold their weights outside parameters())
    inside = [t for island in islands for t in island.state_dict().values()]
    assert inside and all(t.dtype is torch.bfloat16 for t in inside)
    outside = [t for name, t in mixed.state_dict().items() if ".inner." not in name and t.is_floating_point()]
    assert outside and all(t.dtype is torch.float32 for t in outside)  # attention, norms, projections

    paths = sorted(ramplus_tiny.images.iterdir())
    pixels = torch.stack([taggers["fp32"].preprocess(decode_image(path)) for path in paths])
    scores = {name: tagger.scores(pixels) for name, tagger in taggers.items()}
    off = {name: np.abs(scores[name] - scores["fp32"]) for name in ("bf16-mixed", "bf16")}
    # bf16 keeps 8 bits of mantissa: each rounding moves a value by up to 2^-9 of itself, and the
    # sigmoid's slope is at most 1/4, so rounded blocks move scores by hundredths at most here
    # (0.008 on this fixture); the whole model in bf16 rounds more and moves them about 3x as much.
    assert off["bf16-mixed"].max() < 0.03
    assert off["bf16-mixed"].mean() < off["bf16"].mean()


def test_a_recipe_names_blocks_and_an_unknown_part_is_a_usage_error(ramplus_tiny) -> None:
    from ramtag.errors import UsageError
    from ramtag.model.mixed import parts, with_islands

    model = load_tagger(**ramplus_tiny.tagger_kwargs(), device="cpu", precision="fp32").model
    swin = model.image_encoder.swin
    assert [name for _, name in parts(model, "swin0.attn,swin1.merge")] == ["attn"] * len(swin.layers[0].blocks) + ["reduction"]
    with_islands(model, "swin.attn,head.attn")
    with_islands(model, "swin.attn")  # twice: still one island per block
    assert sum(isinstance(m, Island) for m in model.modules()) == sum(len(s.blocks) for s in swin.layers) + len(model.decoder.layers)
    for bad in ("swin.norm", "head", "swin9.mlp", "mlp"):
        with pytest.raises(UsageError, match="bf16 recipe"):
            list(parts(model, bad))


def test_the_default_recipe_fits_a_model_with_fewer_stages() -> None:
    from ramtag.errors import UsageError
    from ramtag.model.config import DecoderConfig, ModelConfig, SwinConfig
    from ramtag.model.mixed import RECIPE, parts, with_islands
    from ramtag.model.synthetic import random_model

    config = ModelConfig(kind="ram_plus", image_size=96, num_tags=3, descriptions_per_tag=2,
                         swin=SwinConfig(embed_dim=8, depths=(1,), num_heads=(1,), window_size=3),
                         decoder=DecoderConfig(hidden_size=16, num_layers=1, intermediate_size=32))
    model = with_islands(random_model(config))  # one stage: its MLP and the decoder's feed-forward
    assert sum(isinstance(m, Island) for m in model.modules()) == 2
    assert isinstance(model.image_encoder.swin.layers[0].blocks[0].mlp, Island)
    with pytest.raises(UsageError, match="the model has 1 Swin stages"):
        list(parts(model, RECIPE + ",swin0.attn"))  # a recipe given by name must fit


def test_run_says_which_precision_auto_chose_and_records_it(ramplus_tiny, tmp_path, monkeypatch) -> None:
    runner = CliRunner()
    out = tmp_path / "tags.parquet"
    images = [str(path) for path in sorted(ramplus_tiny.images.iterdir())[:2]]
    monkeypatch.setenv("RAMTAG_NATIVE_BF16", "1")
    result = runner.invoke(app, ["run", *images, "--out", str(out), *ramplus_tiny.cli_args(), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    said = [line for line in result.stderr.splitlines() if line.startswith("precision ")]
    assert said == ["precision bf16-mixed (bf16 matrix products): RAMTAG_NATIVE_BF16=1 says this CPU has native "
                    "bf16; --precision fp32 for exact scores"]
    assert json.loads(pq.read_schema(out).metadata[METADATA_KEY.encode()])["precision"] == "bf16-mixed"

    # On a CPU without native bf16, auto is fp32: adding to an output made in bf16-mixed is refused.
    monkeypatch.setenv("RAMTAG_NATIVE_BF16", "0")
    more = [str(path) for path in sorted(ramplus_tiny.images.iterdir())[2:4]]
    refused = runner.invoke(app, ["run", *more, "--out", str(out), *ramplus_tiny.cli_args(), "--device", "cpu"])
    assert refused.exit_code == 1 and "precision (bf16-mixed there, fp32 now; --precision bf16-mixed matches it)" in refused.stderr
    assert "bf16_recipe" not in refused.stderr and "blocks bf16-mixed computes" not in refused.stderr  # the precision says it
    assert not [line for line in refused.stderr.splitlines() if line.startswith("precision ")]  # fp32: not news
    verbose = runner.invoke(app, ["run", *more, "--out", str(tmp_path / "v.parquet"), *ramplus_tiny.cli_args(), "-v"])
    assert "precision fp32: RAMTAG_NATIVE_BF16=0 says this CPU has no native bf16" in verbose.stderr
    assert pq.read_table(out).num_rows == 2  # untouched

    quiet = runner.invoke(app, ["run", *more, "--out", str(tmp_path / "b.parquet"), *ramplus_tiny.cli_args(), "-q"])
    assert quiet.exit_code == 0 and not [line for line in quiet.stderr.splitlines() if line.startswith("precision")]
    explicit = runner.invoke(app, ["run", *more, "--out", str(tmp_path / "c.parquet"), *ramplus_tiny.cli_args(),
                                   "--precision", "fp32"])
    assert explicit.exit_code == 0 and "precision fp32:" not in explicit.stderr  # asked for: nothing to explain


def test_bf16_mixed_records_its_recipe_and_results_of_another_recipe_never_mix(
    ramplus_tiny, tmp_path, monkeypatch
) -> None:
    from ramtag.outputs.sidecars import Provenance
    from ramtag.precision import BF16_RECIPE

    runner = CliRunner()
    images = [str(path) for path in sorted(ramplus_tiny.images.iterdir())[:2]]
    out = tmp_path / "tags.parquet"
    monkeypatch.setenv("RAMTAG_NATIVE_BF16", "1")
    first = runner.invoke(app, ["run", images[0], "--out", str(out), *ramplus_tiny.cli_args(), "--device", "cpu"])
    assert first.exit_code == 0, first.output
    table = pq.read_table(out)
    metadata = json.loads(table.schema.metadata[METADATA_KEY.encode()])
    assert metadata["precision"] == "bf16-mixed" and metadata["bf16_recipe"] == BF16_RECIPE

    # As an earlier version wrote it: bf16-mixed without a recorded recipe, i.e. every Swin MLP in bf16.
    older = {key: value for key, value in metadata.items() if key != "bf16_recipe"}
    pq.write_table(table.replace_schema_metadata({**table.schema.metadata,
                                                  METADATA_KEY.encode(): json.dumps(older).encode()}), out)
    refused = runner.invoke(app, ["run", images[1], "--out", str(out), *ramplus_tiny.cli_args(), "--device", "cpu"])
    assert refused.exit_code == 1
    assert (f"the blocks bf16-mixed computes in bf16 (swin.mlp,head.ffn there, {BF16_RECIPE} now; another "
            "version of ramtag made those)") in refused.stderr
    assert pq.read_table(out).num_rows == 1

    exact = tmp_path / "exact.parquet"
    runner.invoke(app, ["run", images[0], "--out", str(exact), *ramplus_tiny.cli_args(), "--precision", "fp32"])
    fp32 = json.loads(pq.read_schema(exact).metadata[METADATA_KEY.encode()])
    assert "bf16_recipe" not in fp32
    # Keywords written by earlier versions in fp32 stay current: the settings hash is the one they hold.
    assert Provenance.from_metadata({**fp32, "bf16_recipe": None}, parent="ramtag", lang="en") == \
        Provenance.from_metadata(fp32, parent="ramtag", lang="en")
    assert Provenance.from_metadata(metadata, parent="ramtag", lang="en") != \
        Provenance.from_metadata(older, parent="ramtag", lang="en")


def test_fp16_on_a_cpu_that_emulates_it_is_warned_about(ramplus_tiny, tmp_path, monkeypatch) -> None:
    import ramtag.cpu

    runner = CliRunner()
    image = str(sorted(ramplus_tiny.images.iterdir())[0])
    said = {}
    for name, flags in {"zen4": "avx2 avx512f avx512_bf16", "sapphire": "avx2 avx512_bf16 avx512_fp16",
                        "unknown": ""}.items():
        monkeypatch.setattr(ramtag.cpu, "_listed_flags", lambda flags=flags: frozenset(flags.split()))
        result = runner.invoke(app, ["run", image, "--out", str(tmp_path / f"{name}.jsonl"), *ramplus_tiny.cli_args(),
                                     "--device", "cpu", "--precision", "fp16"])
        assert result.exit_code == 0, result.output
        said[name] = [line for line in result.stderr.splitlines() if line.startswith("warning: --precision fp16")]
    assert len(said["zen4"]) == 1 and "emulated" in said["zen4"][0] and "use fp32" in said["zen4"][0]
    assert said["sapphire"] == said["unknown"] == []  # native fp16, or flags not listed (ARM, Windows): no word


def test_bf16_on_a_cpu_that_emulates_it_is_warned_about(ramplus_tiny, tmp_path, monkeypatch) -> None:
    """fp16 was warned about, bf16 (up to 8x slower than fp32 there) not."""
    import ramtag.cpu

    image = str(sorted(ramplus_tiny.images.iterdir())[0])
    said = {}
    for name, flags in {"zen3": "avx2 avx512f", "zen4": "avx2 avx512f avx512_bf16", "unknown": ""}.items():
        monkeypatch.setattr(ramtag.cpu, "_listed_flags", lambda flags=flags: frozenset(flags.split()))
        monkeypatch.setattr(ramtag.cpu, "cpu_flags", lambda flags=flags: frozenset(flags.split()))
        monkeypatch.delenv("RAMTAG_NATIVE_BF16", raising=False)
        result = CliRunner().invoke(app, ["run", image, "--out", str(tmp_path / f"{name}.jsonl"), *ramplus_tiny.cli_args(),
                                          "--device", "cpu", "--precision", "bf16-mixed"])
        assert result.exit_code == 0, result.output
        said[name] = [line for line in result.stderr.splitlines() if line.startswith("warning: --precision bf16")]
    assert len(said["zen3"]) == 1 and "emulated" in said["zen3"][0] and "use fp32" in said["zen3"][0]
    assert said["zen4"] == said["unknown"] == []


def _prints_ok(code: str) -> None:
    """``code`` in a fresh interpreter (what is imported at start-up is the point) ends printing ok."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


def test_the_model_loads_and_tags_without_torchdynamo_timms_other_models_or_all_of_torchvision(ramplus_tiny) -> None:
    code = (
        "import sys, torch\n"
        "from ramtag import load_tagger\n"
        f"tagger = load_tagger(**{ {k: str(v) for k, v in ramplus_tiny.tagger_kwargs().items()}!r}, "
        "device='cpu', precision='bf16-mixed')\n"
        f"print(tagger.tag({str(sorted(ramplus_tiny.images.iterdir())[0])!r}).tags[:1])\n"
        "assert 'torch._dynamo' not in sys.modules, 'dynamo was imported'\n"
        "assert 'torch._dynamo' not in vars(torch)\n"
        "from timm.models.swin_transformer import SwinTransformer\n"
        # what torchvision and timm took from the stand-in does the real thing once used
        "roi = sys.modules['torchvision.ops.roi_align']\n"
        "assert roi.is_compile_supported('cpu') is True and 'torch._dynamo' in sys.modules\n"
        "import torch._dynamo\n"
        "assert torch._dynamo.is_compiling() is False\n"
        # timm's other models were not imported; timm as a whole still imports, with the same Swin
        "assert 'timm.models.beit' not in sys.modules and 'timm.data.dataset' not in sys.modules\n"
        "assert 'torchvision.models.resnet' not in sys.modules and 'torchvision.datasets' not in sys.modules\n"
        # what was loaded meanwhile keeps working once the whole packages are asked for
        "from torchvision.ops import boxes as box_ops\n"
        "many = torch.rand(1500, 4)\n"
        "many[:, 2:] += many[:, :2]\n"  # over 1,000 boxes: batched_nms asks its torchvision for more
        "assert len(box_ops.batched_nms(many, torch.rand(1500), torch.randint(0, 3, (1500,)), 0.5)) > 0\n"
        "import torchvision\n"
        "assert box_ops.torchvision is torchvision and torchvision.__version__\n"
        "assert type(torchvision.models.resnet18()).__name__ == 'ResNet'\n"
        "import timm.layers\n"
        "assert timm.layers.Mlp and timm.models.swin_transformer.SwinTransformer is SwinTransformer\n"
        "import timm\n"
        "from timm.models import naflexvit\n"
        "assert type(timm.create_model('swin_tiny_patch4_window7_224')) is SwinTransformer\n"
        "assert 'swin_large_patch4_window12_384' in timm.list_models('swin_large*')\n"
        "print('ok')\n"
    )
    _prints_ok(code)


def test_the_command_line_tags_without_loading_huggingface_hub_when_the_weights_are_local(
    tmp_path: Path, ramplus_tiny
) -> None:
    args = ["run", str(sorted(ramplus_tiny.images.iterdir())[0]), "--out", str(tmp_path / "t.jsonl"),
            *ramplus_tiny.cli_args()]
    code = (
        "import sys\n"
        "from ramtag.cli.app import main\n"
        f"sys.argv = ['ramtag', *{args!r}]\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
        "assert 'huggingface_hub' not in sys.modules and 'torch._dynamo' not in sys.modules\n"
        "assert 'timm.models.beit' not in sys.modules and 'torchvision.datasets' not in sys.modules\n"
        "import huggingface_hub\n"  # nothing was left blocked
        "print('ok')\n"
    )
    _prints_ok(code)
    assert (tmp_path / "t.jsonl").read_text().count("\n") == 1


def test_timm_is_imported_the_ordinary_way_where_a_skipped_init_is_missed() -> None:
    code = (
        "import sys\n"
        "from ramtag.model import _timm\n"
        "_timm._forget('timm', 'torchvision')\n"
        "_timm._SKIPPED['timm.data'] = 'timm.data.moved_elsewhere'\n"  # as if a later timm moved its constants
        "_timm.import_timm()\n"
        "assert 'timm.models.beit' in sys.modules and 'torch._dynamo' not in sys.modules\n"  # only the inits run
        "from timm.models.swin_transformer import SwinTransformer\n"
        "import timm, torchvision\n"
        "assert timm.create_model and torchvision.ops.misc.FrozenBatchNorm2d\n"
        "print('ok')\n"
    )
    _prints_ok(code)


def test_timm_is_imported_as_usual_where_torchvision_came_first() -> None:
    code = (
        "import sys, torchvision\n"
        "import ramtag.tagger\n"
        "from timm.layers import create_norm\n"
        "from torchvision.ops.misc import FrozenBatchNorm2d\n"
        "assert create_norm._NORM_MAP['frozenbatchnorm2d'] is FrozenBatchNorm2d\n"
        "print('ok')\n"
    )
    _prints_ok(code)


def test_a_function_marked_disable_while_timm_was_imported_is_disabled_by_the_real_torchdynamo() -> None:
    from ramtag.model._timm import disable

    @disable
    def double(x: int) -> int:
        return 2 * x

    assert double(21) == 42 and double.__name__ == "double"
    assert disable(recursive=False)(double)(2) == 4  # the decorator-factory form
