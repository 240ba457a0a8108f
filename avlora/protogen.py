"""Generates the Python code for protos/avlora/v1 into avlora/v1 (checked in).

Run `python -m avlora.protogen` after editing a .proto; tests/test_protos.py fails while the
checked-in code and the protos disagree.
"""

import sys
from importlib.resources import files
from pathlib import Path

from grpc_tools import protoc

REPO = Path(__file__).resolve().parent.parent
PROTOS = REPO / "protos"


def generate(out_root: Path) -> list[Path]:
    """Writes avlora/v1/*_pb2*.py(i) under out_root and returns the files written."""
    sources = sorted(str(p.relative_to(PROTOS)) for p in (PROTOS / "avlora" / "v1").glob("*.proto"))
    well_known = str(files("grpc_tools") / "_proto")
    out_root.mkdir(parents=True, exist_ok=True)
    args = ["protoc", f"-I{PROTOS}", f"-I{well_known}", f"--python_out={out_root}",
            f"--pyi_out={out_root}", f"--grpc_python_out={out_root}", *sources]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed: " + " ".join(args))
    package = out_root / "avlora" / "v1"
    (package / "__init__.py").touch()
    return sorted(package.glob("*_pb2*"))


if __name__ == "__main__":
    for path in generate(REPO):
        print(path.relative_to(REPO))
    sys.exit(0)
