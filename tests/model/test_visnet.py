"""The affinity model: physics (invariance), atom typing, determinism and its size knobs."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch

from model import ELEMENTS, AffinityViSNet, count_parameters, synthetic_complexes


def small(**kwargs):
    args = dict(hidden_channels=32, num_layers=2, num_heads=4, num_rbf=16) | kwargs
    torch.manual_seed(0)
    return AffinityViSNet(**args).double()


def batch_of(n=3, max_atoms=80):
    b = Batch.from_data_list(synthetic_complexes(n, max_atoms, seed=3))
    return b.z, b.pos.double(), b.batch


def random_rotation(seed):
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


@pytest.mark.parametrize("seed", range(3))
def test_prediction_is_invariant_to_rotation_and_translation(seed):
    model = small(lmax=2 if seed == 2 else 1).eval()
    z, pos, batch = batch_of()
    before = model(z, pos, batch)
    moved = pos @ random_rotation(seed).T + torch.tensor([12.5, -3.0, 40.0], dtype=torch.float64)
    after = model(z, moved, batch)
    assert before.shape == (3,)
    torch.testing.assert_close(after, before, rtol=1e-9, atol=1e-9)


def test_prediction_changes_under_a_deformation():
    """The invariance test above would pass for a constant model; this one would not."""
    model = small().eval()
    z, pos, batch = batch_of()
    stretched = pos * torch.tensor([1.3, 1.0, 1.0], dtype=torch.float64)
    assert not torch.allclose(model(z, pos, batch), model(z, stretched, batch))


def test_protein_and_ligand_atoms_are_told_apart():
    model = small().eval()
    z, pos, batch = batch_of(1)
    as_protein = torch.where(z >= len(ELEMENTS), z - len(ELEMENTS), z)
    assert not torch.allclose(model(z, pos, batch), model(as_protein, pos, batch))


def test_each_complex_is_predicted_independently_of_its_batch():
    model = small().eval()
    z, pos, batch = batch_of(3)
    together = model(z, pos, batch)
    first = batch == 0
    alone = model(z[first], pos[first], torch.zeros(int(first.sum()), dtype=torch.long))
    torch.testing.assert_close(alone, together[:1])


def test_same_seed_same_model_and_prediction():
    z, pos, batch = batch_of()
    torch.testing.assert_close(small()(z, pos, batch), small()(z, pos, batch), rtol=0, atol=0)


@pytest.mark.parametrize("knob", [{"hidden_channels": 64}, {"num_layers": 3}, {"num_rbf": 32}])
def test_size_knobs_are_constructor_arguments(knob):
    assert count_parameters(small(**knob)) > count_parameters(small())


def test_cutoff_and_neighbour_cap_reach_the_radius_graph():
    model = small(cutoff=3.0, max_num_neighbors=7)
    distance = model.backbone.representation_model.distance
    assert (distance.cutoff, distance.max_num_neighbors) == (3.0, 7)


def test_heads_must_divide_channels():
    with pytest.raises(ValueError, match="multiple of `num_heads`"):
        AffinityViSNet(hidden_channels=30, num_heads=8)


def test_label_statistics_shift_and_scale_the_output():
    model = small().eval()
    z, pos, batch = batch_of()
    base = model(z, pos, batch)
    model.set_label_stats(mean=6.0, std=2.0)
    shifted = model(z, pos, batch)
    # reduce_op=mean: y = mean(atom outputs) * std + mean
    torch.testing.assert_close(shifted, base * 2.0 + 6.0)
