"""The option generator: one dataclass field -> one CLI option, YAML key and --help default."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import pytest
import typer
from typer.testing import CliRunner

from simmim_deploy.cli.options import config_command
from simmim_deploy.core.config import option, redefault
from simmim_deploy.core.errors import UserError


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Shared:
    batch_size: int = option(64, "Images per step.")
    lr: float | None = option(None, "Peak LR per 512 images.")


@dataclasses.dataclass(frozen=True)
class _Cfg(_Shared):
    data: str = option(help="Where the images are.")
    mode: Literal["full", "linear"] = option("full", "Fine-tune or probe.")
    strides: tuple[int, ...] = option((8, 16, 32), "Pyramid strides.")
    compile: bool = option(False, "Use torch.compile.")
    kwargs: dict = option(help="YAML only.", cli=False, default_factory=dict)
    batch_size: int = redefault(_Shared, "batch_size", 16)


def _app(seen: list) -> typer.Typer:
    app = typer.Typer()
    app.command("go")(config_command(_Cfg, seen.append, "Run it.\n\nExample: go --data x", _Shared))

    @app.command("other")
    def other() -> None:  # a second command keeps "go" a named subcommand
        """Unused."""

    return app


def _go(args: list[str]) -> tuple[list, object]:
    seen: list = []
    result = CliRunner().invoke(_app(seen), ["go", *args], env={"COLUMNS": "200"})
    return seen, result


def test_every_type_becomes_an_option_with_its_real_default() -> None:
    seen, result = _go(["--help"])
    text = result.output
    assert result.exit_code == 0 and not seen
    for flag in ("--data", "--mode", "--strides", "--compile", "--no-compile", "--batch-size"):
        assert flag in text, flag
    assert "--kwargs" not in text  # cli=False: YAML only
    assert "8,16,32" in text and "16" in text and "full|linear" in text
    assert "Required (here or in the --config recipe)" in text
    assert "Images per step." in text  # the redefaulted field keeps its help


def test_command_line_beats_recipe_beats_default(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data: from-yaml\nbatch_size: 8\nlr: 0.1\nkwargs: {a: 1}\n")
    seen, result = _go(["--config", str(recipe), "--lr", "0.5", "--strides", "4,8", "--compile"])
    assert result.exit_code == 0, result.output
    (cfg,) = seen
    assert (cfg.data, cfg.batch_size, cfg.lr) == ("from-yaml", 8, 0.5)
    assert cfg.strides == (4, 8) and cfg.compile is True and cfg.kwargs == {"a": 1}
    assert cfg.mode == "full"  # neither given: the dataclass default


def test_bad_values_are_refused() -> None:
    _, result = _go(["--data", "x", "--mode", "half"])
    assert result.exit_code != 0 and "half" in result.output
    _, result = _go(["--lr", "0.1"])
    assert isinstance(result.exception, UserError)
    assert str(result.exception).startswith("--data is required")
    _, result = _go(["--data", "x", "--strides", "4,eight"])
    assert isinstance(result.exception, UserError) and "comma list" in str(result.exception)


def test_the_train_commands_share_one_vocabulary() -> None:
    from simmim_deploy.cli.main import app

    texts = {}
    for command in ("pretrain", "classify", "detect"):
        result = CliRunner().invoke(app, ["train", command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0
        texts[command] = result.output
    for flag in ("--batch-size", "--workers", "--lr ", "--lr-scaling", "--precision", "--aug"):
        assert all(flag in t for t in texts.values()), flag
    assert all("--base-lr" not in t and "--num-workers" not in t for t in texts.values())
    assert "--patience" in texts["classify"] and "--patience" in texts["detect"]


@dataclasses.dataclass(frozen=True)
class _Positional:
    target: str = option(help="What to run.", positional=True, old_flags=("--target",))
    batch_size: tuple[int, ...] = option((1, 8), "Batch sizes.", old_flags=("--batch-sizes",))
    profile: str | tuple[int, ...] = option("1:8:32", "MIN:OPT:MAX (a string: its first type).")


def _run_positional(args: list[str]) -> tuple[list, object]:
    seen: list = []
    app = typer.Typer()
    app.command("go")(config_command(_Positional, seen.append, "Run it."))
    app.command("other")(lambda: None)
    return seen, CliRunner().invoke(app, ["go", *args], env={"COLUMNS": "200"})


def test_arguments_repeated_lists_and_old_flags() -> None:
    seen, result = _run_positional(["x", "--batch-size", "1,2", "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    assert seen[0].target == "x" and seen[0].batch_size == (1, 2, 4)
    assert seen[0].profile == "1:8:32"
    seen, result = _run_positional(["--target", "y", "--batch-sizes", "16", "--profile", "1:2:4"])
    assert result.exit_code == 0, result.output
    assert (seen[0].target, seen[0].batch_size, seen[0].profile) == ("y", (16,), "1:2:4")
    assert "--target is deprecated; use TARGET instead" in result.output
    assert "--batch-sizes is deprecated; use --batch-size instead" in result.output
    _, result = _run_positional(["x", "--target", "y"])
    assert isinstance(result.exception, UserError) and "give it once" in str(result.exception)
    _, result = _run_positional([])
    assert str(result.exception).startswith("TARGET is required")
    _, result = _run_positional(["--help"])
    assert "TARGET" in result.output and "--batch-sizes" not in result.output  # old: hidden


def test_errors_name_the_flag_the_field_declares() -> None:
    from simmim_deploy.serve.bench import BenchmarkConfig

    with pytest.raises(UserError, match=r"^--seconds must be > 0"):
        BenchmarkConfig("bundle", duration=0)
    with pytest.raises(UserError, match=r"^--batch-size must be positive"):
        BenchmarkConfig("bundle", batch_size=(8, 0))


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"mask_patch_size": 0}, r"^--mask-patch-size must be at least 1, got 0"),
        ({"workers": -1}, r"^--workers must be >= 0"),
        (
            {"epochs": 5, "warmup_epochs": 20},
            r"^--warmup-epochs \(20\) must lie in \[0, --epochs=5\)",
        ),
        ({"schedule": "step"}, r"^--schedule step needs --milestones"),
    ],
)
def test_train_errors_name_the_flag_not_the_field(given: dict, message: str) -> None:
    from simmim_deploy.train.pretrain import PretrainConfig

    with pytest.raises(UserError, match=message):
        PretrainConfig(**given)


def test_serve_options_build_the_app_config(tmp_path: Path) -> None:
    from simmim_deploy.cli.serve_cmd import ServeOptions

    token = tmp_path / "token.txt"
    token.write_text("s3cret\n")
    opts = ServeOptions("bundle", token_file=str(token), max_body_mb=1.5, conf=0.4, port=9)
    cfg = opts.app_config()
    assert type(cfg).__name__ == "ServeConfig" and cfg.token == "s3cret"
    assert cfg.max_body_bytes == int(1.5 * 2**20) and cfg.conf == 0.4
    with pytest.raises(UserError, match="--token-file .* does not exist"):
        ServeOptions("bundle", token_file=str(tmp_path / "none")).app_config()
    from simmim_deploy.cli.main import app

    text = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).output
    assert "--score-thresh" in text and "--max-body-mb" in text and "--conf " not in text


def _invoke(cls: type, args: list[str], **kwargs: object) -> tuple[list, object]:
    seen: list = []
    app = typer.Typer()
    app.command("go")(config_command(cls, seen.append, "Run it.", **kwargs))
    app.command("other")(lambda: None)
    return seen, CliRunner().invoke(app, ["go", *args], env={"COLUMNS": "200"})


def test_predict_options_generated_with_ray_panel_and_old_flag() -> None:
    from simmim_deploy.cli.predict_cmd import PredictOptions
    from simmim_deploy.core.config import part_of
    from simmim_deploy.serve.predict import PredictConfig
    from simmim_deploy.serve.ray_options import RayOptions

    args = ["b", "a,1.jpg", "c.jpg", "-b", "4", "--conf", "0.5", "-o", "r.jsonl", "--actors", "2"]
    seen, result = _invoke(PredictOptions, args, shared=RayOptions, panel="Ray")
    assert result.exit_code == 0, result.output
    opts = seen[0]
    assert opts.sources == ("a,1.jpg", "c.jpg")  # arguments are paths: no comma splitting
    assert (opts.batch_size, opts.score_thresh, opts.out) == (4, 0.5, "r.jsonl")
    assert "--conf is deprecated; use --score-thresh instead" in result.output
    assert part_of(opts, RayOptions) == RayOptions(actors=2)
    local = part_of(opts, PredictConfig)
    assert type(local) is PredictConfig and local.sources == opts.sources
    with pytest.raises(UserError, match=r"^--actors must be >= 0"):
        PredictOptions("b", ("x",), actors=-1)
    with pytest.raises(UserError, match=r"^--score-thresh must be between 0 and 1"):
        PredictOptions("b", ("x",), score_thresh=2.0)
    with pytest.raises(UserError, match=r"^--batch-size must be >= 1"):
        PredictConfig("b", ("x",), batch_size=0)
    _, result = _invoke(PredictOptions, ["b"], shared=RayOptions)
    assert str(result.exception).startswith("SOURCES is required")


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("predict", ("[default: (8)]", "--score-thresh", "Ray (--engine ray)", "--decode-in")),
        ("verify", ("[default: (64)]", "[default: (ort-cpu)]", "auto|torch|fp32")),
    ],
)
def test_predict_and_verify_help_shows_real_defaults(command: str, shown: tuple) -> None:
    from simmim_deploy.cli.main import app

    text = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"}).output
    for part in shown:
        assert part in text, part
    assert "--conf " not in text  # the old spelling is hidden


def test_verify_config_refuses_bad_values() -> None:
    from simmim_deploy.export.config import VerifyConfig

    with pytest.raises(UserError, match=r"^--limit must be >= 1"):
        VerifyConfig("bundle", "builtin:digits", limit=0)
    with pytest.raises(UserError, match=r"^--backend must be one of ort, "):
        VerifyConfig("bundle", "builtin:digits", backend="torch")


@pytest.mark.parametrize("args", [["--version"]])
def test_version(args: list[str]) -> None:
    from simmim_deploy import __version__
    from simmim_deploy.cli.main import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0 and result.output.strip() == f"simmim-deploy {__version__}"


def test_demo_and_checks_options_are_generated(tmp_path: Path) -> None:
    from simmim_deploy.cli.main import app

    text = CliRunner().invoke(app, ["demo", "--help"], env={"COLUMNS": "200"}).output
    for part in ("[default: (runs/demo)]", "[default: (no-fast)]", "[default: (auto)]", "--seed"):
        assert part in text, part
    text = CliRunner().invoke(app, ["checks", "--help"], env={"COLUMNS": "200"}).output
    assert "[default: (no-json)]" in text  # the flag's spelling, not the field's (as_json)
    result = CliRunner().invoke(app, ["demo", "--device", "gpu", "--out", str(tmp_path / "d")])
    assert result.exit_code != 0
    assert str(result.exception).startswith("--device must be auto, cpu or cuda[:N]")
    result = CliRunner().invoke(app, ["checks", "--json"])
    assert result.exit_code == 0 and '"cpu_count"' in result.output
