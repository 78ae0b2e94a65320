"""The ``facegan`` command line: thin click commands over the Python API."""
from __future__ import annotations

import importlib
import sys

import click

from facegan_kit.errors import FaceganError
from facegan_kit.outputs import OVERWRITE_HELP

#: command name -> "module:attribute" (imported only when the command runs or help lists it)
COMMANDS = {
    "train": "facegan_kit.cli.train:train_cmd",
    "plugins": "facegan_kit.cli.plugins:plugins_cmd",
    "data": "facegan_kit.cli.data:data_group",
    "edit": "facegan_kit.cli.apps:edit_cmd",
    "grid": "facegan_kit.cli.apps:grid_cmd",
    "transfer": "facegan_kit.cli.apps:transfer_cmd",
    "generate": "facegan_kit.cli.apps:generate_cmd",
    "retrieve": "facegan_kit.cli.apps:retrieve_cmd",
    "tsne": "facegan_kit.cli.apps:tsne_cmd",
    "augment-experiment": "facegan_kit.cli.experiments:augment_cmd",
    "eval": "facegan_kit.cli.evaluate:eval_cmd",
    "bench": "facegan_kit.cli.evaluate:bench_cmd",
    "embed": "facegan_kit.cli.weights:embed_cmd",
    "weights": "facegan_kit.cli.weights:weights_group",
    "serve": "facegan_kit.cli.serve:serve_cmd",
}


def overwrite_option(f):
    """``--overwrite``: the one flag with which a command replaces an earlier result."""
    return click.option("--overwrite", is_flag=True, help=OVERWRITE_HELP)(f)


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(name for name in COMMANDS if self._load(name, quiet=True) is not None)

    def get_command(self, ctx, name):
        return self._load(name, quiet=False) if name in COMMANDS else None

    @staticmethod
    def _load(name, quiet):
        module, attr = COMMANDS[name].split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            if quiet:
                return None
            raise


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="facegan-kit")
def cli():
    """facegan: train and apply conditional face GANs (ExprGAN, CAAE).

    \b
    Train the paper's model on the embedded synthetic faces, quickly on a CPU:
      facegan train recipes/exprgan-quick.toml --out runs/quick
    Edit a face with the trained model (expression + continuous intensity):
      facegan edit runs/quick/final.safetensors face.png --expression happy --intensity 0.7
    See what components are installed (and which package provides each):
      facegan plugins

    Every command has --help. Recipes are TOML files naming registered components;
    override any value with --set key.path=value, inspect with --dry-run.

    No command replaces an earlier result unless given --overwrite (train moves an
    earlier run in its folder to previous/<UTC time>/ instead).
    """


def main(argv=None) -> None:
    """Entry point: user errors print one line (no traceback) and exit non-zero."""
    try:
        cli.main(args=argv, prog_name="facegan", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("facegan: aborted", err=True)
        sys.exit(130)
    except FaceganError as exc:
        click.echo(f"facegan: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("facegan: interrupted", err=True)
        sys.exit(130)
    except OSError as exc:  # the file system refused (disk full, permissions): name the file, no traceback
        where = f"{exc.filename}: " if exc.filename else ""
        click.echo(f"facegan: error: {where}{exc.strerror or exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
