"""What the data limits of a stage's policy need to know of the job's training data, read once
per job (``JobData``) and judged per stage with that stage's ``data_limits`` (``stats``)."""

from __future__ import annotations

from dataclasses import dataclass

from model import ConfigError, TrainConfig, atom_policy, default_cache_dir, inspect_root
from tuner._stages import StageSpec
from tuner.policies import DataStats


@dataclass(frozen=True)
class JobData:
    """The training set's size and, for a PDBbind root, the atoms of each usable complex
    uncropped (None for synthetic complexes, which never exceed ``max_atoms``)."""

    training_samples: int
    atom_counts: tuple[int, ...] | None = None

    @classmethod
    def read(cls, base: TrainConfig) -> JobData:
        """The job's data (a PDBbind root is read through the processed-complex cache)."""
        data = base.data
        if data.source == "synthetic":
            return cls(round(data.num_synthetic * (1 - data.val_fraction)))
        summaries = inspect_root(
            data.source,
            atom_policy(data, max_atoms=10**7),
            cutoff=base.model.cutoff,
            max_num_neighbors=base.model.max_num_neighbors,
            labels_path=data.labels,
            cache_dir=data.cache_dir or default_cache_dir(),
            strict=data.strict,
        )
        counts = tuple(
            (s.protein_atoms or 0) + (s.ligand_atoms or 0) for s in summaries if s.skipped is None
        )
        if not counts:
            raise ConfigError(f"data={data.source}: no usable complex")
        return cls(round(len(counts) * (1 - data.val_fraction)), counts)

    def stats(self, spec: StageSpec) -> DataStats:
        """What ``spec``'s data limits see: the atoms of the complex at its
        ``max_atoms_percentile``, and the number of training samples."""
        if self.atom_counts is None:
            return DataStats(training_samples=self.training_samples)
        return DataStats.from_atom_counts(
            self.atom_counts, spec.data_limits.max_atoms_percentile, self.training_samples
        )
