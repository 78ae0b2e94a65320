"""One registry of component kinds: ``add`` / ``get`` / ``build`` with helpful errors."""
from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from facegan_kit.errors import RegistryError

#: Component kinds and what each is for (see :mod:`facegan_kit.interfaces` for the contracts).
KINDS: dict[str, str] = {
    "encoder": "image (N,3,H,W) in [-1,1] -> identity code (N, z_dim)",
    "decoder": "identity code (N, z_dim) + expression code (N, code_dim) -> image (N,3,H,W)",
    "controller": "one-hot label (N,K) + noise -> expression code (N, code_dim); edit-time codes",
    "discriminator": "image + one-hot label, or identity code -> realness logit (and features)",
    "regularizer": "discriminator features -> predicted expression code (the paper's Q)",
    "loss": "a training objective term, named in a stage's `losses` table",
    "dataset": "a source of labelled face images",
    "metric": "a measurement of a trained model that `facegan eval` adds to its report",
    "backbone": "a frozen pretrained network giving identity features/embeddings",
}


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    factory: Callable[..., Any]
    provider: str
    #: former names that still resolve to this entry (recipes and scripts users already have)
    aliases: tuple[str, ...] = ()

    @property
    def source_file(self) -> str:
        try:
            return inspect.getsourcefile(self.factory) or "?"
        except TypeError:
            return "?"


class Registry:
    """Maps (kind, name) to a factory. Plugins fill it through ``facegan_register_components``."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {k: {} for k in KINDS}
        self._aliases: dict[str, dict[str, str]] = {k: {} for k in KINDS}
        #: Name of the plugin whose hook is running (set by the plugin loader).
        self.current_provider = "<direct>"

    def add(self, kind: str, name: str, factory: Callable[..., Any], aliases: Sequence[str] = ()) -> None:
        """Register ``factory`` as component ``name`` of ``kind``; ``aliases`` are former names
        that keep resolving to it (listed with it, not as components of their own)."""
        self._check_kind(kind)
        if not callable(factory):
            raise RegistryError(f"{kind} '{name}': factory {factory!r} is not callable")
        aliases = (aliases,) if isinstance(aliases, str) else tuple(aliases)
        for n in (name, *aliases):
            if not isinstance(n, str) or not n:
                raise RegistryError(f"{kind}: component name must be a non-empty string, got {n!r}")
            old = self._entries[kind].get(n) or self._entries[kind].get(self._aliases[kind].get(n, ""))
            if old is not None:
                raise RegistryError(
                    f"{kind} '{n}' is registered twice: by {old.provider} and by {self.current_provider}"
                )
        self._entries[kind][name] = Entry(kind, name, factory, self.current_provider, aliases)
        self._aliases[kind].update((a, name) for a in aliases)

    def entry(self, kind: str, name: str, where: str | None = None) -> Entry:
        self._check_kind(kind)
        prefix = f"{where}: " if where else ""
        if not isinstance(name, str):
            raise RegistryError(f"{prefix}{kind} name must be a string, got {type(name).__name__} {name!r}")
        try:
            return self._entries[kind][self._aliases[kind].get(name, name)]
        except KeyError:
            known = sorted(self._entries[kind])
            close = difflib.get_close_matches(str(name), known + sorted(self._aliases[kind]), n=1)
            hint = f"; did you mean '{self._aliases[kind].get(close[0], close[0])}'?" if close else ""
            raise RegistryError(
                f"{prefix}unknown {kind} '{name}' (known: {', '.join(known) or 'none'}){hint}"
            ) from None

    def get(self, kind: str, name: str) -> Callable[..., Any]:
        """The factory registered as ``name`` of ``kind``; unknown names list the known ones."""
        return self.entry(kind, name).factory

    def names(self, kind: str) -> list[str]:
        """The registered names of ``kind``, sorted (aliases are not listed)."""
        self._check_kind(kind)
        return sorted(self._entries[kind])

    def __iter__(self) -> Iterator[Entry]:
        for kind in KINDS:
            yield from (self._entries[kind][n] for n in sorted(self._entries[kind]))

    def _check_kind(self, kind: str) -> None:
        if kind not in KINDS:
            close = difflib.get_close_matches(str(kind), list(KINDS), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise RegistryError(f"unknown component kind '{kind}' (kinds: {', '.join(KINDS)}){hint}")
