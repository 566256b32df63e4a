"""The binding-affinity model: torch_geometric's ViSNet with the project's radius graph."""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.nn.models import ViSNet
from torch_geometric.nn.models.visnet import Distance

from model._atoms import NUM_ATOM_TYPES
from model._radius import radius_graph


class RadiusDistance(Distance):
    """ViSNet's ``Distance`` on the plain-torch radius graph (no torch-cluster, no pyg-lib)."""

    def forward(self, pos: Tensor, batch: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        edge_index = radius_graph(
            pos,
            r=self.cutoff,
            batch=batch,
            loop=self.add_self_loops,
            max_num_neighbors=self.max_num_neighbors,
        )
        edge_vec = pos[edge_index[0]] - pos[edge_index[1]]
        if self.add_self_loops:
            mask = edge_index[0] != edge_index[1]
            edge_weight = torch.zeros(edge_vec.size(0), device=edge_vec.device, dtype=pos.dtype)
            edge_weight[mask] = torch.norm(edge_vec[mask], dim=-1)
        else:
            edge_weight = torch.norm(edge_vec, dim=-1)
        return edge_index, edge_weight, edge_vec


class AffinityViSNet(torch.nn.Module):
    """ViSNet regressing one pK per protein-ligand complex.

    Atoms are tokens from ``model.atom_token``: protein and ligand atoms of the same element have
    different embeddings. The prediction is a scalar read out from rotation-invariant features,
    so it does not change when the complex is rotated or translated.

    Every size knob the stage spaces search is a constructor argument.
    """

    def __init__(
        self,
        hidden_channels: int = 128,
        num_layers: int = 6,
        num_heads: int = 8,
        num_rbf: int = 32,
        cutoff: float = 5.0,
        max_num_neighbors: int = 32,
        lmax: int = 1,
        vecnorm_type: str | None = None,
        trainable_rbf: bool = False,
        vertex: bool = False,
        reduce_op: str = "mean",
        label_mean: float = 0.0,
        label_std: float = 1.0,
    ) -> None:
        super().__init__()
        if hidden_channels % num_heads:
            raise ValueError(
                f"The value of `hidden_channels` is {hidden_channels}, but must be a multiple of "
                f"`num_heads` ({num_heads})."
            )
        self.backbone = ViSNet(
            lmax=lmax,
            vecnorm_type=vecnorm_type,
            num_heads=num_heads,
            num_layers=num_layers,
            hidden_channels=hidden_channels,
            num_rbf=num_rbf,
            trainable_rbf=trainable_rbf,
            max_z=NUM_ATOM_TYPES,
            cutoff=cutoff,
            max_num_neighbors=max_num_neighbors,
            vertex=vertex,
            reduce_op=reduce_op,
            mean=label_mean,
            std=label_std,
        )
        self.backbone.representation_model.distance = RadiusDistance(
            cutoff, max_num_neighbors=max_num_neighbors
        )

    def reset_parameters(self) -> None:
        self.backbone.reset_parameters()

    def set_label_stats(self, mean: float, std: float) -> None:
        """Centre and scale the output on the training labels (buffers, saved with the weights)."""
        self.backbone.mean.fill_(mean)
        self.backbone.std.fill_(std)

    def forward(self, z: Tensor, pos: Tensor, batch: Tensor) -> Tensor:
        """Predicted pK of each complex.

        Args:
            z: ``[N]`` long atom tokens (``model.atom_token``).
            pos: ``[N, 3]`` coordinates in angstroms.
            batch: ``[N]`` complex index of each atom, sorted ascending.

        Returns:
            ``[num_complexes]`` predicted pK.
        """
        y, _ = self.backbone(z, pos, batch)
        return y.view(-1)


def count_parameters(model: torch.nn.Module) -> int:
    """Trainable parameter count: a model's capacity."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
