"""The demo world, kept apart from the product: a fleet of simulated agents (``fleet``), the system of
record they act on (``records``, a small HTTP service over SQLite), and ``flightrec demo`` (``run``)."""
