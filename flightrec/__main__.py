"""``python -m flightrec`` runs the CLI."""

from flightrec.cli import app

if __name__ == "__main__":
    app()
