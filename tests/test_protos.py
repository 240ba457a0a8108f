"""The checked-in generated code must be what the protos generate."""

from pathlib import Path

from avlora.protogen import REPO, generate


def test_generated_code_matches_protos(tmp_path):
    fresh = {path.name: path.read_text() for path in generate(tmp_path)}
    checked_in = {path.name: path.read_text() for path in sorted((REPO / "avlora" / "v1").glob("*_pb2*"))}
    assert sorted(fresh) == sorted(checked_in), "run: python -m avlora.protogen"
    stale = [name for name in fresh if fresh[name] != checked_in[name]]
    assert not stale, f"generated code is stale for {stale}: run python -m avlora.protogen"


def test_every_public_rpc_is_declared():
    text = (REPO / "protos" / "avlora" / "v1" / "jobs.proto").read_text()
    for rpc in ("CreateJob", "GetJob", "ListJobs", "CancelJob", "WatchJob", "GetUsage"):
        assert f"rpc {rpc}(" in text
    assert Path(REPO / "protos" / "avlora" / "v1" / "stages.proto").exists()
