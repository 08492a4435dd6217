"""The committed gRPC modules are what `make proto` makes from the committed cluster.proto."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sluice.executor.cluster import cluster_pb2

PROTO = Path(cluster_pb2.__file__).with_name("cluster.proto")


def test_the_generated_modules_match_cluster_proto(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools comes with the dev extras")
    shutil.copy(PROTO, tmp_path / "cluster.proto")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{tmp_path}",
                    f"--python_out={tmp_path}", f"--grpc_python_out={tmp_path}", "cluster.proto"],
                   check=True, cwd=tmp_path, capture_output=True)
    # Compare the file descriptors (what the .proto says), not the text around them,
    # which carries the generator's version.
    text = (tmp_path / "cluster_pb2.py").read_text()
    assert "AddSerializedFile(" in text
    fresh = text.split("AddSerializedFile(", 1)[1].split(")", 1)[0]
    committed = Path(cluster_pb2.__file__).read_text().split("AddSerializedFile(", 1)[1].split(")", 1)[0]
    assert fresh == committed, "cluster.proto changed: run `make proto` and commit the modules"
    service = (tmp_path / "cluster_pb2_grpc.py").read_text()
    for rpc in ("RegisterNode", "Heartbeat", "NodeChannel", "Connect", "Status", "Locate"):
        assert f"def {rpc}(self, request" in service or f"def {rpc}(self, request_iterator" in service
