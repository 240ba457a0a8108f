"""The code's layering, read from its imports (module level and inside functions): `avlora/` never
imports `services/`, a service never imports another service, and no module imports itself back
through others (no import circles); and the control plane loads no model library."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATED = "avlora.v1"
# The one sideways import left: InspectDataset (preprocess) downloads and extracts a dataset as
# ingest does, in-process. Moving that code under avlora/ would end it.
SIDEWAYS = {("preprocess", "ingest")}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Each of our modules -> the modules of ours it imports."""
    paths = [p for top in ("avlora", "services") for p in (ROOT / top).rglob("*.py")]
    ours = {module_name(p) for p in paths}
    graph: dict[str, set[str]] = {}
    for path in paths:
        name = module_name(path)
        if name.startswith(GENERATED):
            continue
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
        graph[name] = {module for module in found if module in ours and module != name
                       and not module.startswith(GENERATED) and module not in ("avlora", "services")}
    return graph


def test_avlora_never_imports_a_service_and_services_never_import_each_other():
    graph = imports()
    assert len(graph) > 40
    for module, targets in graph.items():
        if module.startswith("avlora"):
            assert not [t for t in targets if t.startswith("services")], module
        elif "." in module:
            service = module.split(".")[1]
            assert not [t for t in targets if t.startswith("services.") and t.split(".")[1] != service
                        and (service, t.split(".")[1]) not in SIDEWAYS], module


def test_no_import_circles():
    graph = imports()
    circles = []

    def visit(module: str, path: list[str]) -> None:
        for target in sorted(graph.get(module, ())):
            if target in path:
                circles.append(path[path.index(target):] + [target])
            elif target not in done:
                visit(target, path + [target])
        done.add(module)

    done: set[str] = set()
    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    assert circles == []


def test_the_control_plane_starts_without_the_model_libraries():
    """The ledger, ingest, the web page and the CLI never load torch, diffusers or boto3 (S3 only
    where a store is on S3): each would add seconds and hundreds of MB to every start."""
    for module in ("services.ledger.__main__", "services.ingest.__main__", "services.web.__main__", "avlora.cli"):
        loaded = subprocess.run([sys.executable, "-c", f"import sys, {module}; print(*sys.modules, sep='\\n')"],
                                cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()
        assert not {"torch", "diffusers", "boto3"} & set(loaded), module
