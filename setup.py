"""Package discovery only; all metadata lives in pyproject.toml.

The built-in plugins live in the top-level folder ``plugins/`` (as the design card asks) but are
installed as the package ``facegan_plugins`` so that no bare module named ``plugins`` lands in
site-packages.
"""
from setuptools import find_packages, setup

core = find_packages(include=["facegan_kit", "facegan_kit.*"])
builtin = ["facegan_plugins" + p[len("plugins"):] for p in find_packages(include=["plugins", "plugins.*"])]
setup(packages=core + builtin, package_dir={"facegan_plugins": "plugins"})
