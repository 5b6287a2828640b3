import math

import numpy as np
import pytest
import torch
from scipy import stats

from kdtransfer.losses import distillation_objective, kd_loss, random_control_logits


def test_kd_loss_matches_hand_computed_value():
    # One sample, two classes, T = 2. Teacher logits [2, 0] -> z/T = [1, 0];
    # p_t = [e/(e+1), 1/(e+1)] = [0.731059, 0.268941]. Student logits [0, 0] -> p_s = [0.5, 0.5].
    # KL(p_t || p_s) = 0.731059*ln(1.462117) + 0.268941*ln(0.537883)
    #               = 0.731059*0.379885 - 0.268941*0.620115 = 0.277718 - 0.166775 = 0.110943;
    # times T^2 = 4 -> 0.443772.
    loss = kd_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 0.0]]), temperature=2.0)
    assert loss.item() == pytest.approx(0.443772, abs=1e-5)


def test_kd_loss_direction_and_batch_mean():
    # KL(teacher || student), not the reverse: swap gives a different number here.
    s, t = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 3.0, 0.0]])
    p_t, p_s = torch.softmax(t, 1)[0], torch.softmax(s, 1)[0]
    forward = float((p_t * (p_t / p_s).log()).sum())
    assert kd_loss(s, t, 1.0).item() == pytest.approx(forward, rel=1e-6)
    # batchmean: two copies give the same value as one.
    assert kd_loss(s.repeat(2, 1), t.repeat(2, 1), 1.0).item() == pytest.approx(forward, rel=1e-6)


def test_distillation_objective_mixes_ce_and_kd():
    s, t, y = torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 0.0]]), torch.tensor([0])
    loss, parts = distillation_objective(s, y, t, alpha=0.9, temperature=2.0)
    assert parts["ce"] == pytest.approx(math.log(2), abs=1e-6)
    assert loss.item() == pytest.approx(0.1 * math.log(2) + 0.9 * 0.443772, abs=1e-5)
    plain, _ = distillation_objective(s, y, None, alpha=0.9, temperature=2.0)
    assert plain.item() == pytest.approx(math.log(2), abs=1e-6)


@pytest.mark.parametrize("noise,dist", [("uniform", stats.uniform(0, 1)), ("gaussian", stats.norm(0, 1))])
def test_random_control_targets_follow_configured_distribution(noise, dist):
    g = torch.Generator().manual_seed(0)
    x = random_control_logits((2000, 10), noise, g).numpy().ravel()
    assert stats.kstest(x, dist.cdf).pvalue > 0.01
    other = stats.norm(0, 1) if noise == "uniform" else stats.uniform(0, 1)
    assert stats.kstest(x, other.cdf).pvalue < 1e-6


def test_random_control_rejects_unknown_noise():
    with pytest.raises(ValueError, match="uniform, gaussian"):
        random_control_logits((2, 2), "laplace", torch.Generator())
