"""The weight-transform product Functions: gradients, double backward and vmap (issue 21)."""

from __future__ import annotations

import pytest
import torch

from ray_macaw.nn.transform_products import transform_matvec, transform_rmatvec


def inputs(rows: int = 7, latent: int = 3, tasks: int = 4) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    matrix = torch.randn(rows, latent, generator=g, dtype=torch.float64, requires_grad=True)
    z = torch.randn(tasks, latent, generator=g, dtype=torch.float64, requires_grad=True)
    u = torch.randn(tasks, rows, generator=g, dtype=torch.float64, requires_grad=True)
    return matrix, z, u


@pytest.mark.parametrize("batched", [True, False])
def test_products_have_the_plain_products_values_and_gradients(batched: bool) -> None:
    matrix, z, u = inputs()
    if not batched:
        z, u = z[0].detach().requires_grad_(), u[0].detach().requires_grad_()
    torch.testing.assert_close(transform_matvec(matrix, z), z @ matrix.T)
    torch.testing.assert_close(transform_rmatvec(matrix, u), u @ matrix)
    assert torch.autograd.gradcheck(transform_matvec, (matrix, z))
    assert torch.autograd.gradcheck(transform_rmatvec, (matrix, u))
    assert torch.autograd.gradgradcheck(transform_matvec, (matrix, z))
    assert torch.autograd.gradgradcheck(transform_rmatvec, (matrix, u))


def test_under_vmap_the_matrix_gradient_is_summed_over_tasks() -> None:
    """vmap over the vectors (M unbatched, as the inner loop runs): same outputs and the same
    dM as the per-task products summed."""
    matrix, z, u = inputs()

    def both(zi: torch.Tensor, ui: torch.Tensor) -> torch.Tensor:
        return transform_matvec(matrix, zi).sum() * transform_rmatvec(matrix, ui).pow(2).sum()

    vmapped = torch.func.vmap(both)(z, u)
    looped = torch.stack([(matrix @ z[i]).sum() * (matrix.T @ u[i]).pow(2).sum() for i in range(4)])
    torch.testing.assert_close(vmapped, looped)
    (got,) = torch.autograd.grad(vmapped.sum(), [matrix])
    (want,) = torch.autograd.grad(looped.sum(), [matrix])
    torch.testing.assert_close(got, want)


def test_vmap_over_the_matrix_falls_back_to_plain_products() -> None:
    matrix, z, _ = inputs()
    matrices = torch.stack([matrix, 2 * matrix]).detach()
    out = torch.func.vmap(transform_matvec, in_dims=(0, None))(matrices, z[0].detach())
    torch.testing.assert_close(out, torch.stack([matrix @ z[0], 2 * matrix @ z[0]]).detach())


def test_deferred_matrix_grads_equal_autograds_and_form_one_product() -> None:
    """Inside `deferred_matrix_grads`, the three uses of M of a low-rank step give M.grad once,
    equal to plain autograd's sum of three gradients (float64)."""
    from ray_macaw.nn import transform_products as T

    g = torch.Generator().manual_seed(0)
    matrix = torch.randn(30, 4, dtype=torch.float64, generator=g, requires_grad=True)
    z = torch.randn(4, dtype=torch.float64, generator=g)
    vectors = torch.randn(5, 4, dtype=torch.float64, generator=g)
    weights = torch.randn(5, 30, dtype=torch.float64, generator=g)

    def loss() -> torch.Tensor:
        theta = T.transform_matvec(matrix, z)  # unbatched, as theta_0 = M z
        grad_z = T.transform_rmatvec(matrix, weights * theta)  # M^T g, batched
        return (T.transform_matvec(matrix, vectors + grad_z) * weights).sum()

    (expected,) = torch.autograd.grad(loss(), matrix)
    with T.deferred_matrix_grads():
        loss().backward()
        assert matrix.grad is None  # still pending inside the block: no full-size dM yet
        pending = T._pending
        assert pending is not None
        lefts = pending[id(matrix)].lefts
        assert sorted(tuple(f.shape) for f in lefts) == [(1, 30), (5, 30), (5, 30)]  # 3 uses
    assert torch.allclose(matrix.grad, expected, rtol=1e-12, atol=1e-12)

    # Inside `matrix_grad_factors`, the inner block leaves the factors to the outer one's owner.
    matrix.grad = None
    with T.matrix_grad_factors() as factors:
        with T.deferred_matrix_grads():
            loss().backward()
    assert matrix.grad is None and list(factors) == [id(matrix)]
    left, right = factors[id(matrix)].stacked()
    assert left.shape == (11, 30) and right.shape == (11, 4)
    assert torch.allclose(left.T @ right, expected, rtol=1e-12, atol=1e-12)
