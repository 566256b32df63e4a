"""The ViSNet binding-affinity model, its data and its one training loop.

Knows nothing of Ray: callers get progress through callbacks.
"""

from model._atoms import ELEMENTS, NUM_ATOM_TYPES, atom_token, element_index
from model._audit import RunStopped, append_audit_entry, export_config, export_path
from model._balance import Ranks, atom_imbalance, balanced_steps
from model._batching import Batching
from model._compose import group_choices, load_train_config, parse_override, split_sweep
from model._config import (
    AutoParamGroupsSpec,
    DataSpec,
    LoopSpec,
    ModelSpec,
    OptimizerSpec,
    SchedulerSpec,
    TrainConfig,
    fixed_choices,
)
from model._dataset import Dataset, atom_policy, load_dataset
from model._errors import ComplexError, ConfigError, DataError, StagetuneError
from model._inspect import ComplexSummary, inspect_root
from model._memory import heap_bytes, held_bytes, live_bytes, peak_growth
from model._optim import Lookahead, build_optimizer, build_scheduler
from model._pdbbind import (
    LoadReport,
    Skipped,
    default_cache_dir,
    load_pdbbind,
    read_labels,
    read_structure,
    to_data,
)
from model._radius import radius_graph
from model._readers import AtomPolicy
from model._run import run_training
from model._synthetic import synthetic_complex, synthetic_complexes
from model._train import Trainer, build_model, resolve_device, resolve_precision
from model._visnet import AffinityViSNet, count_parameters
from model._yaml import FileVersion, read_yaml_mapping, recording_reads, unchanged
from stagetune_api import default_config_dir

__all__ = [
    "ELEMENTS",
    "NUM_ATOM_TYPES",
    "AffinityViSNet",
    "AtomPolicy",
    "AutoParamGroupsSpec",
    "ComplexError",
    "ComplexSummary",
    "ConfigError",
    "DataError",
    "DataSpec",
    "Dataset",
    "FileVersion",
    "LoadReport",
    "Lookahead",
    "RunStopped",
    "LoopSpec",
    "ModelSpec",
    "OptimizerSpec",
    "SchedulerSpec",
    "Skipped",
    "StagetuneError",
    "TrainConfig",
    "Trainer",
    "Ranks",
    "Batching",
    "atom_imbalance",
    "balanced_steps",
    "append_audit_entry",
    "atom_policy",
    "atom_token",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "count_parameters",
    "default_cache_dir",
    "default_config_dir",
    "fixed_choices",
    "element_index",
    "export_config",
    "export_path",
    "group_choices",
    "inspect_root",
    "heap_bytes",
    "held_bytes",
    "live_bytes",
    "load_dataset",
    "load_pdbbind",
    "load_train_config",
    "parse_override",
    "peak_growth",
    "radius_graph",
    "read_labels",
    "read_structure",
    "read_yaml_mapping",
    "recording_reads",
    "resolve_device",
    "resolve_precision",
    "run_training",
    "split_sweep",
    "synthetic_complex",
    "synthetic_complexes",
    "to_data",
    "unchanged",
]
