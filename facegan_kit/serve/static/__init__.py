"""Static files of the ``facegan serve`` page (a package so that package-data globs ship them)."""
