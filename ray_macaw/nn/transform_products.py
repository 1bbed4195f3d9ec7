"""Products with a weight-transform matrix M as autograd Functions that batch tasks themselves.

The low-rank inner step (`ray_macaw.macaw.net_state`) multiplies each transform matrix M
((d_in d_out + d_out) x c, spec §2.1) by many vectors: M z, M z' and M^T g for every task. Under
`torch.func.vmap` the built-in products run in slow layouts ([c, R] x [R, T] with M transposed)
and their backward builds one full-size dM per task before summing. These Functions take the
vectors of all tasks as one (..., c) or (..., R) tensor, so each product is one matrix product in
a fast layout and its backward gives dM summed over tasks in one product (issue 21). The math is
the plain matrix product's: forward and gradients are the same numbers up to summation order.

Both backwards are written with differentiable torch ops, so double backward works; `vmap` rules
move the task dimension first and call the Function again (the batch becomes leading dims).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class MatrixGradFactors:
    """A transform matrix's pending gradient dM = L^T R, as the factors its products recorded."""

    matrix: torch.Tensor
    lefts: list[torch.Tensor] = field(default_factory=list)
    rights: list[torch.Tensor] = field(default_factory=list)

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(L, R): (K, rows of M) and (K, columns of M), dM = L^T R."""
        return torch.cat(self.lefts), torch.cat(self.rights)


# id(matrix) -> its factors, while `matrix_grad_factors` (or `deferred_matrix_grads`) is active.
_pending: dict[int, MatrixGradFactors] | None = None


@contextmanager
def matrix_grad_factors() -> Iterator[dict[int, MatrixGradFactors]]:
    """During a plain backward (no `create_graph`) inside this block, the products' backwards do
    not form a leaf matrix's gradient: they record its factors in the yielded dict (by
    `id(matrix)`), and the matrix's `.grad` is left to the caller. Inner-loop replicas all-gather
    these factors instead of all-reducing each full-size dM (issue 16). A
    `deferred_matrix_grads` block inside this one records here too."""
    global _pending
    previous, _pending = _pending, {}
    try:
        yield _pending
    finally:
        _pending = previous


@contextmanager
def deferred_matrix_grads() -> Iterator[None]:
    """Like `matrix_grad_factors`, then every matrix gets dM = [L_1; L_2; ...]^T [R_1; R_2; ...],
    one product, added to its `.grad` on leaving the block.

    Each transform matrix is used three times per step (theta = M z, M z', M^T g), so autograd
    would build three (R, c) gradients and add them; this writes one (issue 21). Inside an
    active `matrix_grad_factors` block it leaves the factors to that block's owner."""
    if _pending is not None:
        yield
        return
    with matrix_grad_factors() as factors:
        yield
    for entry in factors.values():
        left, right = entry.stacked()
        _add_grad(entry.matrix, left.T @ right)


def _add_grad(param: torch.Tensor, grad: torch.Tensor) -> None:
    """`param.grad += grad`, or `param.grad = grad` when it has none."""
    if param.grad is None:
        param.grad = grad
    else:
        param.grad.add_(grad)


def _matrix_grad(matrix: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> Any:
    """dM = left^T right, or None once recorded for `matrix_grad_factors` (a leaf matrix in a
    backward that builds no graph: nothing differentiates this gradient further)."""
    left, right = _flat(left), _flat(right)
    if _pending is None or torch.is_grad_enabled() or not matrix.is_leaf:
        return left.T @ right
    entry = _pending.setdefault(id(matrix), MatrixGradFactors(matrix))
    entry.lefts.append(left)
    entry.rights.append(right)
    return None


def _flat(t: torch.Tensor) -> torch.Tensor:
    """(..., n) -> (prod(...), n)."""
    return t.reshape(-1, t.shape[-1])


def _batched_vmap(
    fn: Any, info: Any, in_dims: tuple[int | None, int | None], matrix: torch.Tensor, other: Any
) -> tuple[torch.Tensor, int | None]:
    """vmap rule shared by both Functions: with M unbatched, the vmapped dimension becomes a
    leading dimension of the vectors, which the Functions handle natively."""
    matrix_dim, other_dim = in_dims
    if matrix_dim is None:
        if other_dim is None:
            return fn.apply(matrix, other), None
        return fn.apply(matrix, other.movedim(other_dim, 0)), 0
    # M itself vmapped (not MACAW's use): one einsum per batch entry, plain autograd.
    matrix = matrix.movedim(matrix_dim, 0)
    if other_dim is None:
        other = other.expand(info.batch_size, *other.shape)
    else:
        other = other.movedim(other_dim, 0)
    equation = "b...c,brc->b...r" if fn is TransformMatvec else "b...r,brc->b...c"
    return torch.einsum(equation, other, matrix), 0


class TransformMatvec(torch.autograd.Function):
    """M v for a batch of vectors: (R, c), (..., c) -> (..., R)."""

    @staticmethod
    def forward(matrix: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        return vectors @ matrix.T

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        matrix, vectors = ctx.saved_tensors
        grad_matrix = grad_vectors = None
        if ctx.needs_input_grad[0]:  # dM = sum over the batch of dy v^T: one product
            grad_matrix = _matrix_grad(matrix, grad_out, vectors)
        if ctx.needs_input_grad[1]:
            grad_vectors = grad_out @ matrix
        return grad_matrix, grad_vectors

    @staticmethod
    def vmap(
        info: Any, in_dims: tuple[int | None, int | None], matrix: torch.Tensor, vectors: Any
    ) -> tuple[torch.Tensor, int | None]:
        return _batched_vmap(TransformMatvec, info, in_dims, matrix, vectors)


class TransformRmatvec(torch.autograd.Function):
    """M^T g for a batch of vectors: (R, c), (..., R) -> (..., c)."""

    @staticmethod
    def forward(matrix: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        return vectors @ matrix

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        matrix, vectors = ctx.saved_tensors
        grad_matrix = grad_vectors = None
        if ctx.needs_input_grad[0]:  # dM = sum over the batch of g dy^T: one product
            grad_matrix = _matrix_grad(matrix, vectors, grad_out)
        if ctx.needs_input_grad[1]:
            grad_vectors = grad_out @ matrix.T
        return grad_matrix, grad_vectors

    @staticmethod
    def vmap(
        info: Any, in_dims: tuple[int | None, int | None], matrix: torch.Tensor, vectors: Any
    ) -> tuple[torch.Tensor, int | None]:
        return _batched_vmap(TransformRmatvec, info, in_dims, matrix, vectors)


def transform_matvec(matrix: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """M v for every vector in `vectors` (..., c)."""
    return TransformMatvec.apply(matrix, vectors)


def transform_rmatvec(matrix: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """M^T g for every vector in `vectors` (..., R)."""
    return TransformRmatvec.apply(matrix, vectors)
