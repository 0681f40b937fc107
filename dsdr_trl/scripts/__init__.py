"""Command-line entry points: `dsdr-trl <subcommand>` (see `dsdr_trl.scripts.cli`)."""
