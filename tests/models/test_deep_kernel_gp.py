"""The deep-kernel GP as a BoTorch model: equal to plain GPyTorch, batched candidates equal to one
set, differentiable in z."""

from __future__ import annotations

import gpytorch
import pytest
import torch

from grabnas.models.deep_kernel_gp import DeepKernelGP
from grabnas.models.surrogate_config import DTYPE
from grabnas.models.value_maps import predict

torch.set_num_threads(1)


class _PlainGPyTorch(gpytorch.models.ExactGP):
    """The same model written as a plain GPyTorch ExactGP (default prediction code path)."""

    def __init__(self, model: DeepKernelGP) -> None:
        super().__init__(model.train_inputs[0], model.train_targets, model.likelihood)
        self.src = model

    def forward(self, x):
        m, phi = self.src.feature_map(x)
        mean = self.src.mean_offset + self.src.mean_scale * m
        return gpytorch.distributions.MultivariateNormal(mean, self.src.covar_module(phi))


@pytest.mark.parametrize("transform", ["rank-gauss", "standardize"])
def test_posterior_equals_gpytorch(transform, make_surrogate, toy_data):
    sur = make_surrogate(transform)
    X_obs, y_obs, X_test = toy_data(sur)
    model = sur.fit(X_obs, y_obs)
    assert isinstance(model, DeepKernelGP) and model.num_outputs == 1
    post = model.posterior(X_test)
    plain = _PlainGPyTorch(model).eval()
    with torch.no_grad():
        ref = plain(X_test)
    mean, var = ref.mean, ref.variance
    if transform == "standardize":  # BoTorch's outcome transform returns raw units
        tf = model.outcome_transform
        mean, var = mean * tf.stdvs.squeeze() + tf.means.squeeze(), var * tf.stdvs.squeeze() ** 2
    torch.testing.assert_close(post.mean.squeeze(-1).detach(), mean, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(post.variance.squeeze(-1).detach(), var, rtol=1e-7, atol=1e-9)
    # the joint covariance too (small q: GPyTorch's own code path)
    torch.testing.assert_close(
        post.distribution.covariance_matrix[:5, :5].detach(),
        ref.covariance_matrix[:5, :5]
        * (model.outcome_transform.stdvs.squeeze() ** 2 if transform == "standardize" else 1.0),
        rtol=1e-6,
        atol=1e-8,
    )


def test_batched_candidates_equal_flat_posterior(make_surrogate, toy_data):
    sur = make_surrogate()
    X_obs, y_obs, X_test = toy_data(sur)
    model = sur.fit(X_obs, y_obs)
    flat = model.posterior(X_test, observation_noise=True)
    batched = model.posterior(X_test.unsqueeze(1), observation_noise=True)
    assert batched.mean.shape == (len(X_test), 1, 1)
    torch.testing.assert_close(batched.mean.reshape(-1), flat.mean.reshape(-1))
    torch.testing.assert_close(batched.variance.reshape(-1), flat.variance.reshape(-1))
    mu, var = predict(model, X_test, observation_noise=True, chunk=7)
    torch.testing.assert_close(mu, flat.mean.reshape(-1).detach())
    torch.testing.assert_close(var, flat.variance.reshape(-1).detach())


def test_gradients_flow_to_z_through_an_acquisition(make_surrogate, toy_data):
    from botorch.acquisition import LogExpectedImprovement

    sur = make_surrogate()
    X_obs, y_obs, _ = toy_data(sur)
    model = sur.fit(X_obs, y_obs)
    z = torch.randn(6, 4, dtype=DTYPE, requires_grad=True)
    X = sur.inputs(z, sur.task_embedding().detach())
    acq = LogExpectedImprovement(model, best_f=model.best_f)
    acq(X.unsqueeze(1)).sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    z2 = torch.randn(3, 4, dtype=DTYPE, requires_grad=True)
    model.posterior(sur.inputs(z2, sur.task_embedding().detach())).mean.sum().backward()
    assert z2.grad.abs().sum() > 0
