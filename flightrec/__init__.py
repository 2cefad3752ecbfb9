"""Flight Recorder: settings, app assembly, API routes, the CLI, the SDK helper and the demo fleet."""

__version__ = "0.1.0"
