"""Entry point of the ``simmim-deploy`` command line.

Each command lives in its own module and imports torch/onnx/... only inside its function, so
``simmim-deploy --help`` is instant. Errors a user can cause are :class:`UserError`: printed as one
line and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys

import typer

from simmim_deploy.cli import (
    benchmark_cmd,
    build_cmd,
    checks_cmd,
    demo_cmd,
    evaluate_cmd,
    export_cmd,
    predict_cmd,
    serve_cmd,
    train_classify_cmd,
    train_detect_cmd,
    train_pretrain_cmd,
    triton_cmd,
    verify_cmd,
)
from simmim_deploy.core.errors import UserError

app = typer.Typer(
    name="simmim-deploy",
    help="SimMIM pre-training, fine-tuning, export and serving for timm ViT/Swin encoders.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
train_app = typer.Typer(
    help="Train: SimMIM pre-training, then classification or detection fine-tuning.",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")


def _print_version(value: bool) -> None:
    if value:
        from simmim_deploy import __version__

        typer.echo(f"simmim-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """SimMIM pre-training, fine-tuning, export and serving for timm ViT/Swin encoders."""


# (group, name, command function), in --help order.
COMMANDS = (
    (train_app, "pretrain", train_pretrain_cmd.pretrain),
    (train_app, "classify", train_classify_cmd.classify),
    (train_app, "detect", train_detect_cmd.detect),
    (app, "evaluate", evaluate_cmd.evaluate),
    (app, "export", export_cmd.export),
    (app, "build", build_cmd.build),
    (app, "verify", verify_cmd.verify),
    (app, "triton", triton_cmd.triton),
    (app, "predict", predict_cmd.predict),
    (app, "serve", serve_cmd.serve),
    (app, "benchmark", benchmark_cmd.benchmark),
    (app, "demo", demo_cmd.demo),
    (app, "checks", checks_cmd.checks),
)
for group, name, function in COMMANDS:
    group.command(name)(function)


def main() -> None:
    """Run the CLI; turn user errors into one line on stderr and exit code 2."""
    try:
        app()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
