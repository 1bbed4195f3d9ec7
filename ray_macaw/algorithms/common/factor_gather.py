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

Factors = tuple[torch.Tensor, torch.Tensor]  # one replica's L (K x R) and R (K x c) of a dM


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
    each goes follows from every rank's factor rows, which all replicas see alike: each replica
    puts its row counts in its own slots of the step's gradient all-reduce (`row_slots`), so no
    collective of their own is needed.

    Args:
        matrices: The transform matrices, in the same order on every replica.
    """

    def __init__(self, matrices: Sequence[torch.Tensor]) -> None:
        self.matrices = list(matrices)
        self.widths = [m.shape[0] + m.shape[1] for m in self.matrices]
        # dM is formed into the same buffers every step: fresh ones pay their page faults again
        # (as `replicas.GradientReducer`'s buffer).
        self.grads = [torch.empty_like(m) for m in self.matrices]
        self.sent_bytes = 0  # what this replica contributed to the last step's collectives

    def own(self, factors: Mapping[int, MatrixGradFactors]) -> list[Factors | None]:
        """This replica's stacked factors (L, R) per matrix, from its
        `transform_products.matrix_grad_factors` record (None where it has none)."""
        return [self._own(m, factors) for m in self.matrices]

    def row_slots(self, own: Sequence[Factors | None], rank: int, world: int) -> list[float]:
        """world x matrices numbers, zero but this rank's row counts: summed over the replicas
        (in the gradient all-reduce) they are every rank's counts."""
        slots = [0.0] * (world * len(self.matrices))
        for j, factors in enumerate(own):
            slots[rank * len(self.matrices) + j] = 0.0 if factors is None else len(factors[0])
        return slots

    def gather(self, own: Sequence[Factors | None], summed_slots: Sequence[float]) -> None:
        """Set every matrix's `.grad` to dM summed over the replicas, from this replica's `own`
        factors and every replica's `row_slots` summed."""
        if not self.matrices:
            return
        width = len(self.matrices)
        counts = [
            [int(n) for n in summed_slots[r : r + width]]
            for r in range(0, len(summed_slots), width)
        ]
        rows = [max(per_rank[j] for per_rank in counts) for j in range(width)]
        factored = [
            r * w < m.numel() for r, w, m in zip(rows, self.widths, self.matrices, strict=True)
        ]
        self.sent_bytes = self._sum_factored(own, counts, rows, factored)
        self.sent_bytes += self._sum_dense(own, factored)
        for j, matrix in enumerate(self.matrices):
            if not any(per_rank[j] for per_rank in counts):  # no replica reached it
                matrix.grad = None

    @staticmethod
    def _own(matrix: torch.Tensor, factors: Mapping[int, MatrixGradFactors]) -> Factors | None:
        if matrix.grad is not None:
            raise RuntimeError(
                "a weight-transform matrix has a dense gradient besides its factors: its layer "
                "was used outside the low-rank products; train with low_rank_wt on for every "
                "use, or with 0 inner-loop workers"
            )
        entry = factors.get(id(matrix))
        return None if entry is None else entry.stacked()

    def _sum_factored(
        self,
        own: Sequence[Factors | None],
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
            split = self.matrices[j].shape[0]
            real = [
                buffer[start:stop].view(rows[j], self.widths[j])[: per_rank[j]]
                for buffer, per_rank in zip(received, counts, strict=True)
            ]
            # Contiguous L and R: a product of strided slices runs at about half the speed.
            left = torch.cat([block[:, :split] for block in real])
            right = torch.cat([block[:, split:] for block in real])
            torch.mm(left.T, right, out=self.grads[j])
            self.matrices[j].grad = self.grads[j]
        return send.numel() * send.element_size()

    def _sum_dense(self, own: Sequence[Factors | None], factored: list[bool]) -> int:
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
