"""CLI startup benchmark: wall time of `flightrec --version`, `--help`, a client command and the bare import.

Each is run in a fresh process ``--runs`` times; the median and worst are printed against
the 0.5 s target (issue 14). The CLI imports what a command needs when it runs, so these
pay only for typer, rich, httpx and the settings.

    python bench/cli_startup.py --runs 15
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, machine  # noqa: E402

TARGET_S = 0.5
FLIGHTREC = Path(sys.executable).with_name("flightrec")


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="fresh processes per command")
    args = parser.parse_args()
    down = f"http://127.0.0.1:{free_port()}"
    commands = {
        "python -c 'import flightrec.cli'": [sys.executable, "-c", "import flightrec.cli"],
        "flightrec --version": [str(FLIGHTREC), "--version"],
        "flightrec --help": [str(FLIGHTREC), "--help"],
        "flightrec alerts (server down)": [str(FLIGHTREC), "alerts", "--api", down],
    }
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f}; {args.runs} runs each")
    for name, command in commands.items():
        timed(command)  # warm the file cache
        times = [timed(command) for _ in range(args.runs)]
        median = statistics.median(times)
        verdict = "met" if median <= TARGET_S else "MISSED"
        print(f"{name:34s} median {median:.3f} s, worst {max(times):.3f} s (target {TARGET_S} s: {verdict})")


if __name__ == "__main__":
    main()
