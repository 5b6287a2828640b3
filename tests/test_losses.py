import math

import pytest
import torch
from scipy import stats

from kdtransfer.training.losses import (
    HintRegressor,
    attention_map,
    attention_transfer_loss,
    distillation_objective,
    feature_loss,
    fixed_example_noise,
    hint_loss,
    kd_loss,
    match_spatial,
    random_control_noise,
)


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
    assert float(parts["ce"]) == pytest.approx(math.log(2), abs=1e-6)
    assert loss.item() == pytest.approx(0.1 * math.log(2) + 0.9 * 0.443772, abs=1e-5)


@pytest.mark.parametrize("noise,dist", [("uniform", stats.uniform(0, 1)), ("gaussian", stats.norm(0, 1))])
def test_random_control_targets_follow_configured_distribution(noise, dist):
    g = torch.Generator().manual_seed(0)
    x = random_control_noise((2000, 10), noise, g).numpy().ravel()
    assert stats.kstest(x, dist.cdf).pvalue > 0.01
    other = stats.norm(0, 1) if noise == "uniform" else stats.uniform(0, 1)
    assert stats.kstest(x, other.cdf).pvalue < 1e-6


def test_random_control_rejects_unknown_noise():
    with pytest.raises(ValueError, match="uniform, gaussian"):
        random_control_noise((2, 2), "laplace", torch.Generator())


# Feature-map KD. Every expected number below is worked out by hand in the comments.


def regressor_with(weight: float, bias: float, student_shape=(1, 2, 2), teacher_shape=(1, 2, 2)) -> HintRegressor:
    reg = HintRegressor([student_shape], [teacher_shape])
    with torch.no_grad():
        reg.maps[0].weight.fill_(weight)
        reg.maps[0].bias.fill_(bias)
    return reg


def test_hint_loss_hand_computed():
    # One channel, 2x2. The 1x1 regressor maps s -> 2s + 1: [[1, 2], [3, 4]] -> [[3, 5], [7, 9]].
    # Teacher [[3, 4], [5, 6]]: errors 0, 1, 2, 3 -> MSE = (0 + 1 + 4 + 9) / 4 = 3.5.
    s = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    t = torch.tensor([[[[3.0, 4.0], [5.0, 6.0]]]])
    assert hint_loss([s], [t], regressor_with(2.0, 1.0)).item() == pytest.approx(3.5)


def test_hint_loss_pools_the_larger_map_and_maps_channels():
    # Student 1 channel 4x4, teacher 2 channels 2x2. Average-pooling the student's 2x2 blocks of
    # [[0,0,2,2],[0,0,2,2],[4,4,6,6],[4,4,6,6]] gives [[0, 2], [4, 6]]; the regressor (weight 1,
    # bias 0, both output channels) copies it into each channel. Teacher channel 0 = [[0, 2], [4, 6]]
    # (error 0), channel 1 = [[1, 3], [5, 7]] (error 1 everywhere): MSE over 8 values = 4/8 = 0.5.
    s = torch.tensor([[0.0, 0, 2, 2], [0, 0, 2, 2], [4, 4, 6, 6], [4, 4, 6, 6]]).view(1, 1, 4, 4)
    t = torch.stack([torch.tensor([[0.0, 2], [4, 6]]), torch.tensor([[1.0, 3], [5, 7]])]).view(1, 2, 2, 2)
    reg = regressor_with(1.0, 0.0, (1, 4, 4), (2, 2, 2))
    assert hint_loss([s], [t], reg).item() == pytest.approx(0.5)


def test_hint_regressor_kinds():
    reg = HintRegressor([(8, 4, 4), (6, 10), (5,)], [(16, 2, 2), (12, 10), (3,)])
    kinds = [type(m).__name__ for m in reg.maps]
    assert kinds == ["Conv2d", "Conv1d", "Linear"]
    assert [tuple(m.weight.shape[:2]) for m in reg.maps] == [(16, 8), (12, 6), (3, 5)]
    with pytest.raises(ValueError, match="differ in rank"):
        HintRegressor([(8, 4, 4)], [(8, 16)])


def test_match_spatial_rejects_maps_of_different_kinds():
    with pytest.raises(ValueError, match="same kind"):
        match_spatial(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 16))


def test_attention_map_hand_computed():
    # Channels [1, -2] and [3, 0] at two positions: mean of squares [(1+9)/2, (4+0)/2] = [5, 2]
    # (the sign of -2 does not matter: |F|^2), L2-normalised: [5, 2] / sqrt(29).
    f = torch.tensor([[[1.0, -2.0], [3.0, 0.0]]])
    expected = torch.tensor([[5.0, 2.0]]) / math.sqrt(29)
    torch.testing.assert_close(attention_map(f), expected)


def test_attention_transfer_loss_hand_computed():
    # Sample 1: a_s = [5, 2]/sqrt(29) (as above), teacher channels [1, 1], [1, 1] -> a_t = [1, 1]/sqrt(2).
    #   ||a_s - a_t||_2 = sqrt((5/sqrt29 - 1/sqrt2)^2 + (2/sqrt29 - 1/sqrt2)^2).
    # Sample 2: student == teacher -> 0. Batch mean = half of sample 1's norm.
    # A second layer pair, identical maps: contributes 0 to the sum over pairs.
    s = torch.tensor([[[1.0, -2.0], [3.0, 0.0]], [[1.0, 1.0], [2.0, 2.0]]])
    t = torch.tensor([[[1.0, 1.0], [1.0, 1.0]], [[1.0, 1.0], [2.0, 2.0]]])
    r29, r2 = math.sqrt(29), math.sqrt(2)
    norm = math.sqrt((5 / r29 - 1 / r2) ** 2 + (2 / r29 - 1 / r2) ** 2)  # 0.402132...
    same = torch.randn(2, 3, 4, 4)
    loss = attention_transfer_loss([s, same], [t, same.clone()])
    assert loss.item() == pytest.approx(norm / 2, rel=1e-6)
    assert norm == pytest.approx(0.402132, abs=1e-6)


def test_attention_transfer_pools_the_larger_map_first():
    # Student one channel 2x2 of ones pooled to 1x1 -> one position -> a_s = [1]; teacher 1x1 -> [1].
    assert attention_transfer_loss([torch.ones(1, 1, 2, 2)], [torch.full((1, 3, 1, 1), 5.0)]).item() == pytest.approx(
        0.0
    )
    with pytest.raises(ValueError, match="needs maps with positions"):
        attention_transfer_loss([torch.ones(2, 4)], [torch.ones(2, 4)])


def test_combined_objective_adds_the_weighted_feature_term():
    # CE = ln 2 and KD = 0.443772 as in the tests above; feature term 3.5 (the hint example), β = 0.2.
    s, t, y = torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 0.0]]), torch.tensor([0])
    feat = feature_loss(
        "hint",
        [torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])],
        [torch.tensor([[[[3.0, 4.0], [5.0, 6.0]]]])],
        regressor_with(2.0, 1.0),
    )
    loss, parts = distillation_objective(s, y, t, alpha=0.9, temperature=2.0, feature_term=feat, feature_weight=0.2)
    assert float(parts["feature"]) == pytest.approx(3.5)
    assert loss.item() == pytest.approx(0.1 * math.log(2) + 0.9 * 0.443772 + 0.2 * 3.5, abs=1e-5)
    with pytest.raises(ValueError, match="hint, attention"):
        feature_loss("gram", [], [])
    # No weight of its own: β is the config's (kd.feature_weight), never a silent default.
    with pytest.raises(ValueError, match="kd.feature_weight"):
        distillation_objective(s, y, t, alpha=0.9, temperature=2.0, feature_term=feat)


def test_hint_gradient_reaches_student_and_regressor():
    s = torch.randn(2, 3, 4, 4, requires_grad=True)
    reg = HintRegressor([(3, 4, 4)], [(5, 4, 4)])
    hint_loss([s], [torch.randn(2, 5, 4, 4)], reg).backward()
    assert s.grad.abs().sum() > 0 and reg.maps[0].weight.grad.abs().sum() > 0


def test_fixed_example_noise_is_a_function_of_the_example():
    a = fixed_example_noise(torch.tensor([4, 7]), (2, 3), "gaussian", seed=1, layer=0)
    b = fixed_example_noise(torch.tensor([7, 9, 4]), (2, 3), "gaussian", seed=1, layer=0)
    assert torch.equal(a[0], b[2]) and torch.equal(a[1], b[0])  # same example, same map, any batch
    assert not torch.equal(a[0], a[1])
    other_layer = fixed_example_noise(torch.tensor([4]), (2, 3), "gaussian", seed=1, layer=1)
    assert not torch.equal(a[0], other_layer[0])
    u = fixed_example_noise(torch.arange(200), (10,), "uniform", seed=0, layer=0).numpy().ravel()
    assert stats.kstest(u, stats.uniform(0, 1).cdf).pvalue > 0.01
