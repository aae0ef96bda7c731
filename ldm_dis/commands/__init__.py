"""Command modules of `ldm-dis`: one file per subcommand, each with add_parser(subparsers, name, help)."""
