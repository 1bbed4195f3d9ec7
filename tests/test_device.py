"""The device setting and the device-aware meta-step (issue 21)."""

from __future__ import annotations

import pytest
import torch
from test_inner_loop import make_batch

from ray_macaw import MACAWConfig
from ray_macaw.algorithms.common.devices import resolve_device, to_cpu, to_device
from ray_macaw.algorithms.common.replicas import load_training_state, training_state
from ray_macaw.algorithms.macaw.validation import MACAWConfigError
from ray_macaw.algorithms.replica.workers import GradientComputer
from ray_macaw.macaw import (
    InnerLoopConfig,
    MACAWModel,
    ModelConfig,
    build_optimizers,
    meta_backward,
)

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def small_model(dtype: torch.dtype = torch.float32) -> MACAWModel:
    torch.manual_seed(0)
    return MACAWModel(ModelConfig(obs_dim=4, act_dim=2, hidden=(8, 8), latent_dim=5)).to(dtype)


def one_meta_step(model: MACAWModel, device: str) -> dict[str, torch.Tensor]:
    """One meta-step (meta-gradient + Adam) on `device`; parameters after it, on the CPU."""
    model = model.to(device)
    optimizers = build_optimizers(model, 1e-3, 1e-3, 1e-3)
    dtype = next(model.parameters()).dtype
    inner = to_device(make_batch(3, 16, 4, 2, seed=1, dtype=dtype), torch.device(device))
    outer = to_device(make_batch(3, 16, 4, 2, seed=2, dtype=dtype), torch.device(device))
    meta_backward(model, inner, outer, InnerLoopConfig(), 3.0, vectorize=True)
    for opt in optimizers.values():
        opt.step()
    return to_cpu(dict(model.named_parameters()))


def test_cpu_and_auto_outside_ray_resolve_to_the_cpu() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")  # Ray gave this process no GPU
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")


@no_cuda
@pytest.mark.parametrize(
    "settings",
    [
        {"training": {"device": "cuda"}},
        {"workers": {"num_gpus_per_worker": 1, "num_workers": 1}},
    ],
)
def test_gpu_requests_without_a_gpu_fail_at_validation(settings: dict) -> None:
    config = MACAWConfig().environment(family="point-robot")
    config = config.training(**settings.get("training", {}))
    config = config.inner_loop_workers(**settings.get("workers", {}))
    with pytest.raises(MACAWConfigError, match="GPU") as error:
        config.validate(check_data=False)
    assert "Fix: train on the CPU" in str(error.value)
    assert "\n" not in str(error.value)


def test_unknown_device_is_refused_at_validation() -> None:
    config = MACAWConfig().environment(family="point-robot").training(device="gpu")
    with pytest.raises(MACAWConfigError, match="device must be one of"):
        config.validate(check_data=False)


def test_cpu_settings_validate() -> None:
    MACAWConfig().environment(family="point-robot").training(device="cpu").validate(
        check_data=False
    )


def test_gradient_computer_moves_batches_to_the_model_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Batches are gathered on the CPU and handed to the meta-step on the model's device (here
    torch's 'meta' device, which any machine has), once for all tasks."""
    from ray_macaw.algorithms.replica import workers

    calls = []
    monkeypatch.setattr(
        workers,
        "gather",
        lambda data, requests, one_hot, inner_data: (
            make_batch(2, 8, 4, 2, seed=3),
            make_batch(2, 8, 4, 2, seed=4),
        ),
    )
    monkeypatch.setattr(
        workers,
        "meta_backward",
        lambda model, inner, outer, *args, **kwargs: (
            calls.append({v.device.type for v in [*inner.values(), *outer.values()]}) or {}
        ),
    )
    model = small_model().to("meta")
    GradientComputer(model, {}, InnerLoopConfig(), True).accumulate([], 1.0)
    assert calls == [{"meta"}]


def test_rank_0_state_loads_onto_the_driver_model_device() -> None:
    """Rank 0's weights, optimiser state and gradients (sent on the CPU) land on the driver's
    model, on its device, as they were."""
    replica, driver = small_model(), small_model()
    optimizers = build_optimizers(replica, 1e-3, 1e-3, 1e-3)
    for p in replica.parameters():
        p.grad = torch.full_like(p, 2.0)
    for opt in optimizers.values():
        opt.step()
    state = training_state(replica, optimizers, with_grads=True)
    driver_optimizers = build_optimizers(driver, 1e-3, 1e-3, 1e-3)
    load_training_state(driver, driver_optimizers, state)
    for (name, p), q in zip(driver.named_parameters(), replica.parameters(), strict=True):
        assert torch.equal(p, q) and p.grad is not None, name
        assert p.grad.device == p.device and torch.equal(p.grad, torch.full_like(p, 2.0))
    assert driver_optimizers["value"].state_dict()["state"][0]["step"].item() == 1


def test_to_cpu_copies_nested_optimizer_state() -> None:
    model = small_model()
    optimizers = build_optimizers(model, 1e-3, 1e-3, 1e-3)
    state = to_cpu({k: o.state_dict() for k, o in optimizers.items()})
    assert state["value"]["param_groups"][0]["lr"] == 1e-3
    assert isinstance(state["value"]["param_groups"][0]["params"], list)


@needs_cuda
def test_one_meta_step_on_cuda_matches_the_cpu() -> None:
    """The same meta-step (float64) on CUDA and on the CPU: same parameters after Adam."""
    on_cpu = one_meta_step(small_model(torch.float64), "cpu")
    on_cuda = one_meta_step(small_model(torch.float64), "cuda")
    for name, value in on_cpu.items():
        torch.testing.assert_close(on_cuda[name], value, rtol=1e-6, atol=1e-12, msg=name)
