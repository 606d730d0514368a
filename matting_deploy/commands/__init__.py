"""One thin module per subcommand: click options, one call into a stage package, printing."""
