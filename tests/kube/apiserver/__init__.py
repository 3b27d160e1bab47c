"""A test API server: kmock's Kubernetes emulator with enough fidelity for kubectl and kopf.

with running_apiserver([pathlib.Path("crds/modelfleets.modelfleet.dev.yaml")]) as server:
    subprocess.run(["kubectl", "get", "modelfleets"], env={"KUBECONFIG": str(server.kubeconfig_path)})
"""

from tests.kube.apiserver.runner import ApiServer, running_apiserver

__all__ = ["ApiServer", "running_apiserver"]
