"""Former home of the synthetic-data oracles: they judge models, so they live in
:mod:`facegan_kit.eval.oracles`. This name stays importable for code written against it and
is the very same module object (so ``isinstance`` checks and monkeypatching agree)."""
import sys

from facegan_kit.eval import oracles as _oracles

sys.modules[__name__] = _oracles
