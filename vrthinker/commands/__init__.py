"""`judge SUBCOMMAND` implementations: each has configure(parser) and run(args)."""
