"""Where the nodes of a multi-node training job meet: torchrun's static rendezvous at node 0.

Node 0, the trainer service, starts ``torchrun --node-rank 0`` for each job; its agent hosts the
TCPStore at ``host:port`` and waits up to ``timeout_s`` for the other nodes' agents
(``services.trainer.peer``, which start ``torchrun --node-rank R`` in a loop) to connect. A static
rendezvous fits a service: the node ranks are fixed by configuration, node 0 always hosts, and a
node missing at the start fails the job after a bounded wait instead of shrinking it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rendezvous:
    nnodes: int
    host: str
    port: int
    timeout_s: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def torchrun_args(self, node_rank: int) -> list[str]:
        """torchrun's flags for ``node_rank`` (the static backend is torchrun's default)."""
        return [f"--nnodes={self.nnodes}", f"--node-rank={node_rank}", f"--master-addr={self.host}",
                f"--master-port={self.port}", f"--rdzv-conf=timeout={self.timeout_s}"]

    def peers(self) -> str:
        """The node ranks the service waits for, as words."""
        return "node rank 1" if self.nnodes == 2 else f"node ranks 1-{self.nnodes - 1}"

    def missing(self) -> str:
        """Why a job failed before its processes started: some peer never joined."""
        return (f"the job needs {self.nnodes} nodes, but {self.peers()} did not all join its rendezvous at "
                f"{self.address} within {self.timeout_s} s: run `python -m services.trainer.peer` on each "
                f"(TRAINER_NODE_RANK 1-{self.nnodes - 1}, TRAINER_RDZV_HOST/PORT reaching this node)")
