"""Built-in facegan_kit plugins (installed as ``facegan_plugins``)."""
