"""``python -m facegan_kit`` is the ``facegan`` command."""
from facegan_kit.cli import main

main()
