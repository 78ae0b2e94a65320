"""``facegan plugins``: which components are registered, by which package, in which file."""
from __future__ import annotations

import json

import click

from facegan_kit.registry import KINDS


@click.command("plugins")
@click.option("--kind", type=click.Choice(sorted(KINDS)), default=None, help="Only this component kind.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins_cmd(kind, as_json):
    """List registered components: kind, name, providing package, file.

    A component's former names, which recipes may still use, are shown after it as
    "(also: ...)". Block plugins with FACEGAN_BLOCK_PLUGINS=name1,name2 (entry-point names).
    """
    from facegan_kit.pm import default_registry

    rows = [e for e in default_registry() if kind is None or e.kind == kind]
    if as_json:
        click.echo(json.dumps([{"kind": e.kind, "name": e.name, "aliases": list(e.aliases), "provider": e.provider,
                                "file": e.source_file} for e in rows], indent=2))
        return
    if not rows:
        click.echo("no components registered")
        return
    names = {e: e.name + (f" (also: {', '.join(e.aliases)})" if e.aliases else "") for e in rows}
    w1 = max(len(e.kind) for e in rows)
    w2 = max(len(n) for n in names.values())
    w3 = max(len(e.provider) for e in rows)
    for e in rows:
        click.echo(f"{e.kind:<{w1}}  {names[e]:<{w2}}  {e.provider:<{w3}}  {e.source_file}")
