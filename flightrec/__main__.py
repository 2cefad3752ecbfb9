"""``python -m flightrec`` runs the CLI, as the ``flightrec`` command does (flightrec/entry.py)."""

from flightrec.entry import main

if __name__ == "__main__":
    main()
