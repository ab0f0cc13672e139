"""Command-line entry points: flags -> cnnjax calls."""
