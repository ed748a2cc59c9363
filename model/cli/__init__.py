"""Command-line entry points of the model package."""
