"""``python -m flightrec`` runs the CLI."""

from flightrec.cli import app

app()
