"""The house's floors: no import between `xpengine` subpackages runs in a loop or back up a floor.

Every `import xpengine.X...` / `from xpengine.X... import` in the package (module level or inside a
function: a lazy import is still a dependency) is an edge between subpackages. The floors, lowest first:

    0  _gaiaxpy, spectra, io                  files, formats, the XP representation
    1  features                               tokens from tables (pure maths)
    2  model, datasets, catalog, simulate     the network, training sets, the catalogue's schema and
                                              queries, the simulated sky
    3  train, inference                       the training loop; serving a model
    4  evaluate, pipeline                     scoring models; the Ray job
    5  tasks, cli                             the paper's tasks; the command line

An edge may go down or stay on its floor, never up, and the subpackage graph has no cycle.

And the modules a Ray job's processes import before their first batch (`JOB_MODULES`) pull in no heavy
library at import time (`HEAVY`): on a 2-core node the predictor actors and the driver import at the
same time, so every such import is CPU taken from the job's fixed cost.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "xpengine"
FLOORS = {
    "_gaiaxpy": 0,
    "spectra": 0,
    "io": 0,
    "features": 1,
    "model": 2,
    "datasets": 2,
    "catalog": 2,
    "simulate": 2,
    "train": 3,
    "inference": 3,
    "evaluate": 4,
    "pipeline": 4,
    "tasks": 5,
    "cli": 5,
}


def _subpackage(path: Path) -> str | None:
    rel = path.relative_to(PACKAGE).parts
    if len(rel) == 1:
        name = rel[0].removesuffix(".py")
        return None if name == "__init__" else name
    return rel[0]


def import_edges() -> dict[tuple[str, str], list[str]]:
    """{(from subpackage, to subpackage): [files]} over every .py file of the package."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for f in sorted(PACKAGE.rglob("*.py")):
        src = _subpackage(f)
        if src is None:
            continue
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            elif isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            else:
                continue
            for m in mods:
                parts = m.split(".")
                if parts[0] == "xpengine" and len(parts) > 1 and parts[1] != src:
                    edges[(src, parts[1])].append(str(f.relative_to(PACKAGE.parent)))
    return edges


def _cycles(edges: dict[tuple[str, str], list[str]]) -> list[list[str]]:
    """Strongly connected components of more than one subpackage (Tarjan)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_every_subpackage_has_a_floor():
    found = {_subpackage(f) for f in PACKAGE.rglob("*.py")} - {None}
    assert found <= set(FLOORS), f"subpackages without a floor in this test: {sorted(found - set(FLOORS))}"


def test_no_import_runs_back_up_a_floor_or_in_a_loop():
    edges = import_edges()
    up = {
        f"{a} (floor {FLOORS[a]}) -> {b} (floor {FLOORS[b]}): {files[:3]}"
        for (a, b), files in edges.items()
        if FLOORS[b] > FLOORS[a]
    }
    assert not up, "imports back up a floor:\n" + "\n".join(sorted(up))
    cycles = _cycles(edges)
    detail = [f"{a} -> {b}: {edges[(a, b)][:3]}" for c in cycles for a in c for b in c if (a, b) in edges]
    assert not cycles, f"import cycles between subpackages {cycles}:\n" + "\n".join(detail)


def test_the_check_finds_a_loop():
    """The checker itself: a made-up back edge is a cycle."""
    edges = import_edges()
    assert not _cycles(edges)
    assert _cycles({**edges, ("features", "pipeline"): ["made-up"]})


# What the job's processes import at module level (the predictor actor: Ray Data unpickles its map
# functions, so it imports `stages` and what that imports; the driver: `ray_job`), and the libraries
# none of them may import there: torch only in the actor's constructor, ray only inside the job's
# functions (`ray_job`) or where Ray is running already, the rest only in the functions that use them.
# Measured (session 18, `python -X importtime`, after `import ray.data` as in the actor): `stages` and
# everything below it 0.13 s, all xpengine's own modules plus numpy/pyarrow; torch 1.5 s. Not listed:
# yaml (catalog.schema writes astropy's header with it; `import ray` imports it in every Ray process
# anyway), numpy and pyarrow (the stages' data).
JOB_MODULES = (
    "xpengine.pipeline.stages",
    "xpengine.pipeline.predictor_stage",
    "xpengine.pipeline.bookkeeping",
    "xpengine.pipeline.tuning",
    "xpengine.inference.catalogue",
    "xpengine.pipeline.ray_job",
)
HEAVY = (
    "torch", "ray", "pandas", "scipy", "astropy", "matplotlib", "duckdb", "xgboost", "sklearn", "gaiaxpy",
    "fsspec", "s3fs", "gcsfs", "adlfs", "healpy", "numba", "polars", "pydantic", "sympy", "requests", "h5py",
    "safetensors",
)  # fmt: skip


def _heavy_after_import(modules: tuple[str, ...]) -> list[str]:
    """The HEAVY libraries in sys.modules of a fresh interpreter that imported `modules`."""
    code = (
        "import importlib, json, sys\n"
        f"for m in {list(modules)!r}:\n"
        "    importlib.import_module(m)\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_job_modules_import_nothing_heavy():
    """Each of the job's modules, imported alone in a fresh interpreter, leaves every HEAVY library
    unimported: a module-level import of one is made lazy (inside the function that needs it)."""
    found = {m: heavy for m in JOB_MODULES if (heavy := _heavy_after_import((m,)))}
    assert not found, f"heavy libraries imported at module level: {found}"


def test_the_heavy_import_check_finds_one():
    """The checker itself: a module that imports a heavy library at module level is caught."""
    assert "pandas" in _heavy_after_import(("xpengine.pipeline.stages", "pandas"))
