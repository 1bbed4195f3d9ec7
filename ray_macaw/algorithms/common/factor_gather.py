"""The replicas' sum of the weight-transform matrices' gradients, exchanged as low-rank factors.

A transform matrix M ((d_in d_out + d_out) x c: 10,100 x 100, 4 MB, for a Cheetah-sized hidden
layer) gets its meta-gradient from its products as dM = L^T R (`nn/transform_products.py`), with
K rows in L and R: 1 + 2 x (the tasks computed) for one inner step. Summed over replicas,
dM = [L_1; ...; L_N]^T [R_1; ...; R_N]. So the replicas all-gather the factors, K (R + c) floats
each (7 x 10,200 for 3 tasks, against R c = 1,010,000 for the dense gradient), and every replica
forms the same sum from the same rows in rank order: the gradients are equal bit for bit on every
replica (issue 16). The other parameters' gradients (latents, biases, learned lrs: ~1% of the
floats at Cheetah sizes) keep the dense all-reduce (`replicas.GradientReducer`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.distributed as dist
from torch import nn

from ray_macaw.nn.layers import WeightTransformLinear
from ray_macaw.nn.transform_products import MatrixGradFactors


def transform_matrices(model: nn.Module) -> list[torch.Tensor]:
    """Every weight-transform layer's matrix M, in module order."""
    return [
        module.transform.weight
        for module in model.modules()
        if isinstance(module, WeightTransformLinear)
    ]


class FactorGather:
    """Sums `matrices`' gradients over the replicas: all-gathers their factors and sets each
    matrix's `.grad`.

    A matrix whose factors would outweigh it (K (R + c) >= R c: a small latent, or many tasks
    per replica) is summed densely instead, in one all-reduce of all such matrices. Which way
    each goes follows from every rank's factor rows, which all replicas see alike.

    Args:
        matrices: The transform matrices, in the same order on every replica.
    """

    def __init__(self, matrices: Sequence[torch.Tensor]) -> None:
        self.matrices = list(matrices)
        self.widths = [m.shape[0] + m.shape[1] for m in self.matrices]
        self.sent_bytes = 0  # what this replica contributed to the last step's collectives

    def gather(self, factors: Mapping[int, MatrixGradFactors]) -> None:
        """Set every matrix's `.grad` to dM summed over the replicas, from each replica's
        `transform_products.matrix_grad_factors` record (None where no replica has one)."""
        if not self.matrices:
            return
        own = [self._own(m, factors) for m in self.matrices]
        counts = self._counts([0 if f is None else len(f[0]) for f in own])
        rows = [max(per_rank[j] for per_rank in counts) for j in range(len(self.matrices))]
        factored = [
            r * w < m.numel() for r, w, m in zip(rows, self.widths, self.matrices, strict=True)
        ]
        self.sent_bytes = self._sum_factored(own, counts, rows, factored)
        self.sent_bytes += self._sum_dense(own, factored)
        for j, matrix in enumerate(self.matrices):
            if not any(per_rank[j] for per_rank in counts):  # no replica reached it
                matrix.grad = None

    @staticmethod
    def _own(
        matrix: torch.Tensor, factors: Mapping[int, MatrixGradFactors]
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        if matrix.grad is not None:
            raise RuntimeError(
                "a weight-transform matrix has a dense gradient besides its factors: its layer "
                "was used outside the low-rank products; train with low_rank_wt on for every "
                "use, or with 0 inner-loop workers"
            )
        entry = factors.get(id(matrix))
        return None if entry is None else entry.stacked()

    def _counts(self, mine: list[int]) -> list[list[int]]:
        """Every rank's factor rows per matrix (one small all-gather)."""
        local = torch.tensor(mine, dtype=torch.int64, device=self.matrices[0].device)
        everyone = [torch.empty_like(local) for _ in range(dist.get_world_size())]
        dist.all_gather(everyone, local)
        return [t.tolist() for t in everyone]

    def _sum_factored(
        self,
        own: list[tuple[torch.Tensor, torch.Tensor] | None],
        counts: list[list[int]],
        rows: list[int],
        factored: list[bool],
    ) -> int:
        """All-gather the `factored` matrices' [L | R], each padded with zero rows to `rows`,
        and set dM = L_all^T R_all from every rank's real rows, in rank order. Bytes sent."""
        chosen = [j for j in range(len(self.matrices)) if factored[j]]
        if not chosen:
            return 0
        first = self.matrices[0]
        send = torch.zeros(
            sum(rows[j] * self.widths[j] for j in chosen), dtype=first.dtype, device=first.device
        )
        blocks, offset = {}, 0
        for j in chosen:
            start, offset = offset, offset + rows[j] * self.widths[j]
            blocks[j] = (start, offset)
            factors = own[j]
            if factors is not None:
                left, right = factors
                block = send[start:offset].view(rows[j], self.widths[j])
                block[: len(left), : left.shape[1]] = left
                block[: len(left), left.shape[1] :] = right
        received = [torch.empty_like(send) for _ in counts]
        dist.all_gather(received, send)
        for j in chosen:
            start, stop = blocks[j]
            stacked = torch.cat(
                [
                    buffer[start:stop].view(rows[j], self.widths[j])[: per_rank[j]]
                    for buffer, per_rank in zip(received, counts, strict=True)
                ]
            )
            split = self.matrices[j].shape[0]
            self.matrices[j].grad = stacked[:, :split].T @ stacked[:, split:]
        return send.numel() * send.element_size()

    def _sum_dense(
        self, own: list[tuple[torch.Tensor, torch.Tensor] | None], factored: list[bool]
    ) -> int:
        """All-reduce the matrices not `factored` as dense gradients, in one buffer. Bytes sent."""
        dense = [
            (m, f) for m, f, fact in zip(self.matrices, own, factored, strict=True) if not fact
        ]
        if not dense:
            return 0
        first = dense[0][0]
        flat = torch.zeros(sum(m.numel() for m, _ in dense), dtype=first.dtype, device=first.device)
        offset = 0
        for matrix, factors in dense:
            if factors is not None:
                left, right = factors
                flat[offset : offset + matrix.numel()].view_as(matrix).addmm_(left.T, right)
            offset += matrix.numel()
        dist.all_reduce(flat)
        offset = 0
        for matrix, _ in dense:
            matrix.grad = flat[offset : offset + matrix.numel()].view_as(matrix)
            offset += matrix.numel()
        return flat.numel() * flat.element_size()
