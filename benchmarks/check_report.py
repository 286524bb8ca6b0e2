"""The head and the files of a check script's result, shared by the scripts under benchmarks/: its
command line (`check_parser`: the docstring's first paragraph as description, `--json` and `--markdown`),
the command, machine and date (`run_header`, and `command_line`, the markdown line that gives them), then
the JSON, the markdown and the printed table (`write_outputs`); and the paper's giant domain the checks
score mass and age on (`paper_giants`)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np


def check_parser(doc: str | None) -> argparse.ArgumentParser:
    """A check script's argument parser: the first paragraph of its docstring `doc` as description (the rest
    shown as written), with `--json` (required) and `--markdown` for `write_outputs`."""
    ap = argparse.ArgumentParser(
        description=(doc or "").split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--json", required=True, help="output JSON path")
    ap.add_argument("--markdown", help="output markdown path (the table is printed either way)")
    return ap


def run_header(script: str, argv: Sequence[str] | None, *, load: bool = False) -> dict[str, str]:
    """The command, machine and date that head a check's result (script: its path in the repository;
    load: the machine's 1-minute load average too, for timings)."""
    args = sys.argv[1:] if argv is None else list(argv)
    machine = f"{platform.platform()}, {os.cpu_count()} CPUs"
    if load:
        machine += f", load {os.getloadavg()[0]:.2f}"
    return {
        "command": shlex.join(["python", script, *args]),
        "machine": machine,
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def command_line(result: Mapping[str, Any]) -> str:
    """The markdown line under a check's title: its command, machine and date (`run_header`'s keys)."""
    return f"Command: `{result['command']}`; {result['machine']}; {result['date_utc']}"


def write_outputs(
    result: Mapping[str, Any], json_path: str, markdown_path: str | None, markdown: str
) -> None:
    """Write a check's result as JSON (numpy scalars as floats) and its markdown where asked, then
    print the markdown."""
    Path(json_path).parent.mkdir(parents=True, exist_ok=True)
    Path(json_path).write_text(json.dumps(result, indent=1, default=float) + "\n")
    if markdown_path:
        Path(markdown_path).write_text(markdown)
    print(markdown)


def paper_giants(teff: Any, logg: Any) -> np.ndarray:
    """(N,) bool: the giant domain of Zhang et al. (2026), logg < 3.5 and 3500 < Teff < 5500 K (NaN: False)."""
    teff, logg = np.asarray(teff, dtype=np.float64), np.asarray(logg, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (logg < 3.5) & (teff > 3500.0) & (teff < 5500.0)
