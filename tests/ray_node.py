"""One Ray node as a process of its own, for tests: ``python ray_node.py PARAMS_JSON``.

Starts a head (``"head": true``) or a worker node with Ray's own node class, as
``ray.cluster_utils.Cluster`` does, prints ``{"address": GCS_ADDRESS}`` and runs until SIGTERM,
then stops the node's processes. Every address is on loopback (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
makes Ray take 127.0.0.1 as this machine's address instead of the network one).
"""

from __future__ import annotations

import json
import signal
import sys

from ray._private.node import Node
from ray._private.parameter import RayParams


def main() -> None:
    params = json.loads(sys.argv[1])
    head = params.pop("head", False)
    defaults = {"node_ip_address": "127.0.0.1", "min_worker_port": 0, "max_worker_port": 0,
                "object_store_memory": 80 * 1024 * 1024, "include_log_monitor": False}
    if head:
        defaults["include_dashboard"] = False
    else:
        defaults["node_manager_port"] = 0
    ray_params = RayParams(**{**defaults, **params})
    node = Node(ray_params, head=head, shutdown_at_exit=False, spawn_reaper=True)
    print(json.dumps({"address": node.gcs_address, "node_id": node.node_id}), flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    node.kill_all_processes(check_alive=False, allow_graceful=False)


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    main()
