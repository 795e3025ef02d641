"""Command-line interface: one module per command; each parses, validates and calls one library function."""
