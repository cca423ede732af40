"""One module per ``dreamlab`` subcommand; each defines ``register(subparsers)``."""
