"""Loading PDBbind-style roots: real files, every kind of bad complex, the cache, the CLI."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from model import AtomPolicy, ComplexError, DataError, inspect_root, load_pdbbind, read_labels
from model._pdbbind import StructureCache, read_structure

from ..conftest import run_cli


def reference_counts(root: Path) -> dict[str, dict[str, str]]:
    with (root / "atoms.csv").open() as handle:
        return {row["pdb_id"]: row for row in csv.DictReader(handle)}


def make_root(tmp_path: Path, source: Path, ids: list[str], index_ids: list[str] | None = None):
    """A writable copy of some complexes, with an index of ``index_ids`` (default: ``ids``)."""
    root = tmp_path / "root"
    root.mkdir()
    for cid in ids:
        shutil.copytree(source / cid, root / cid)
        for f in (root / cid).iterdir():
            f.chmod(0o644)
    lines = (source / "INDEX_general_PL_data.2020").read_text().splitlines()
    keep = set(index_ids if index_ids is not None else ids)
    text = [ln for ln in lines if ln.startswith("#") or ln.split()[0] in keep]
    (root / "INDEX_general_PL_data.2020").write_text("\n".join(text) + "\n")
    return root


# --- the real sample ---------------------------------------------------------------------------


def test_every_real_complex_loads_with_the_reference_counts(pdbbind_mini, tmp_path):
    report = load_pdbbind(pdbbind_mini, cache_dir=tmp_path / "cache")
    expected = reference_counts(pdbbind_mini)
    assert report.skipped == []
    assert sorted(c.complex_id for c in report.complexes) == sorted(expected)
    for c in report.complexes:
        row = expected[c.complex_id]
        assert c.num_ligand_atoms == int(row["ligand_heavy_atoms"])
        # heavy atoms only, waters dropped, metal ions (ZN, NA) kept
        assert c.num_nodes - c.num_ligand_atoms == int(row["pocket_heavy_atoms"])


def test_labels_are_the_index_pk(pdbbind_mini, tmp_path):
    labels = read_labels(pdbbind_mini / "INDEX_general_PL_data.2020")
    assert labels["1azm"] == 6.10 and labels["6ud2"] == 10.21 and len(labels) == 20
    report = load_pdbbind(pdbbind_mini, cache_dir=tmp_path / "cache")
    by_id = {c.complex_id: float(c.y) for c in report.complexes}
    assert by_id == pytest.approx(labels)


def test_crop_keeps_every_ligand_atom_and_the_nearest_pocket_atoms(pdbbind_mini):
    full = read_structure(pdbbind_mini / "1xjd", AtomPolicy(max_atoms=10_000))
    cropped = read_structure(pdbbind_mini / "1xjd", AtomPolicy(max_atoms=120))
    assert len(cropped.ligand_symbols) == len(full.ligand_symbols) == 35
    assert len(cropped.pocket_symbols) == 120 - 35
    dist = np.linalg.norm(full.pocket_pos[:, None] - full.ligand_pos[None], axis=-1).min(1)
    kept = np.linalg.norm(cropped.pocket_pos[:, None] - full.ligand_pos[None], axis=-1).min(1)
    assert kept.max() <= np.sort(dist)[120 - 35 - 1] + 1e-9


def test_policy_knobs_change_what_is_kept(pdbbind_mini):
    folder = pdbbind_mini / "6ql1"  # pocket with NA and ZN ions, 13 waters
    base = read_structure(folder, AtomPolicy(max_atoms=10_000))
    no_metals = read_structure(folder, AtomPolicy(max_atoms=10_000, keep_metals=False))
    waters = read_structure(folder, AtomPolicy(max_atoms=10_000, drop_waters=False))
    hydrogens = read_structure(folder, AtomPolicy(max_atoms=10_000, heavy_only=False))
    assert len(base.pocket_symbols) - len(no_metals.pocket_symbols) == 2
    assert {"Na", "Zn"} <= set(base.pocket_symbols)
    assert len(waters.pocket_symbols) - len(base.pocket_symbols) == 13
    assert len(hydrogens.pocket_symbols) - len(base.pocket_symbols) == 71  # atoms.csv pocket_H


def test_protein_file_is_cut_to_a_pocket_when_there_is_no_pocket_file(pdbbind_mini, tmp_path):
    root = make_root(tmp_path, pdbbind_mini, ["1azm"])
    (root / "1azm" / "1azm_pocket.pdb").unlink()
    structure = read_structure(root / "1azm", AtomPolicy(max_atoms=10_000))
    # the cut at 8 A is close to PDBbind's pocket file (402 heavy atoms), far below the protein
    assert 300 < len(structure.pocket_symbols) < 450
    dist = np.linalg.norm(structure.pocket_pos[:, None] - structure.ligand_pos[None], axis=-1).min(
        1
    )
    assert dist.min() < 4.0


def test_a_protein_with_nothing_near_the_ligand_is_skipped(pdbbind_mini, tmp_path):
    root = make_root(tmp_path, pdbbind_mini, ["1azm"])
    (root / "1azm" / "1azm_pocket.pdb").unlink()
    with pytest.raises(ComplexError, match=r"1azm_protein.pdb: no protein atom within 0.5 A"):
        read_structure(root / "1azm", AtomPolicy(pocket_radius=0.5))


def test_labels_from_a_csv(pdbbind_mini, tmp_path):
    root = make_root(tmp_path, pdbbind_mini, ["1azm", "5mnn"], index_ids=[])
    (root / "INDEX_general_PL_data.2020").unlink()
    labels = tmp_path / "labels.csv"
    labels.write_text("id,pk\n1AZM,6.5\n5mnn,4.25\n")
    report = load_pdbbind(root, labels_path=labels)
    assert {c.complex_id: float(c.y) for c in report.complexes} == {"1azm": 6.5, "5mnn": 4.25}


# --- bad complexes -----------------------------------------------------------------------------

BAD_CASES = {
    "garbage pocket": (
        "5mnn",
        lambda d: (d / "5mnn_pocket.pdb").write_text("not a pdb\n"),
        "5mnn_pocket.pdb",
        "no atoms",
    ),
    "missing ligand": (
        "5mnn",
        lambda d: [(d / f"5mnn_ligand.{e}").unlink() for e in ("sdf", "mol2")],
        "5mnn",
        "no ligand file",
    ),
    "garbage ligands": (
        "5mnn",
        lambda d: [(d / f"5mnn_ligand.{e}").write_text("junk\n$$$$\n") for e in ("sdf", "mol2")],
        "5mnn",
        "RDKit cannot read",
    ),
    "nan coordinates": (
        "5mnn",
        lambda d: _nan_first_atom(d / "5mnn_pocket.pdb"),
        "5mnn_pocket.pdb",
        "NaN",
    ),
    "empty folder": ("5mnn", lambda d: [f.unlink() for f in d.iterdir()], "5mnn", "no ligand file"),
}


def _nan_first_atom(path: Path) -> None:
    lines = path.read_text().splitlines()
    i = next(i for i, ln in enumerate(lines) if ln.startswith("ATOM"))
    lines[i] = lines[i][:30] + f"{'nan':>8}" + lines[i][38:]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_a_bad_complex_is_reported_and_loading_goes_on(case, pdbbind_mini, tmp_path, caplog):
    cid, spoil, where, reason = BAD_CASES[case]
    root = make_root(tmp_path, pdbbind_mini, ["1azm", cid])
    spoil(root / cid)
    report = load_pdbbind(root, cache_dir=tmp_path / "cache")
    assert [c.complex_id for c in report.complexes] == ["1azm"]
    [skipped] = report.skipped
    assert skipped.complex_id == cid
    assert skipped.path.endswith(where) and reason in skipped.reason
    assert cid in report.summary() and reason in report.summary()
    assert any(cid in r.getMessage() and reason in r.getMessage() for r in caplog.records)


def test_unreadable_sdf_falls_back_to_mol2(pdbbind_mini, tmp_path):
    root = make_root(tmp_path, pdbbind_mini, ["1azm"])
    (root / "1azm" / "1azm_ligand.sdf").write_text("junk\n$$$$\n")
    structure = read_structure(root / "1azm", AtomPolicy())
    assert structure.ligand_source.endswith("1azm_ligand.mol2")
    assert len(structure.ligand_symbols) == 13


def test_no_label_and_an_index_line_without_a_folder(pdbbind_mini, tmp_path):
    root = make_root(tmp_path, pdbbind_mini, ["1azm", "5mnn"], index_ids=["1azm", "6ud2"])
    report = load_pdbbind(root)
    reasons = {s.complex_id: (s.path, s.reason) for s in report.skipped}
    assert [c.complex_id for c in report.complexes] == ["1azm"]
    assert "no label for 5mnn" in reasons["5mnn"][1]
    assert reasons["6ud2"][0].endswith("6ud2") and "no such folder" in reasons["6ud2"][1]


def test_strict_stops_at_the_first_bad_complex(pdbbind_mini, tmp_path):
    root = make_root(tmp_path, pdbbind_mini, ["1azm", "5mnn"])
    (root / "1azm" / "1azm_pocket.pdb").write_text("garbage\n")
    with pytest.raises(ComplexError, match=r"1azm_pocket.pdb: no atoms.*strict") as info:
        load_pdbbind(root, strict=True)
    assert info.value.complex_id == "1azm"


def test_a_root_without_any_usable_complex_is_an_error(tmp_path):
    with pytest.raises(DataError, match="data root not found"):
        load_pdbbind(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no usable complex"):
        load_pdbbind(tmp_path / "empty")


def test_a_malformed_index_line_names_file_and_line(tmp_path):
    index = tmp_path / "INDEX_general_PL_data.2020"
    index.write_text("# header\n1abc 2.0 2001 notanumber Kd=1uM\n")
    with pytest.raises(DataError, match=r"INDEX_general_PL_data.2020:2"):
        read_labels(index)


# --- cache -------------------------------------------------------------------------------------


def test_cache_is_reused_and_rebuilt_when_a_file_or_the_policy_changes(pdbbind_mini, tmp_path):
    root = make_root(tmp_path, pdbbind_mini, ["1azm", "5mnn"])
    cache_dir = tmp_path / "cache"
    policy = AtomPolicy()
    first = StructureCache(cache_dir, policy)
    for cid in ("1azm", "5mnn"):
        first.get(root / cid)
    assert (first.hits, first.misses) == (0, 2)

    again = StructureCache(cache_dir, policy)
    for cid in ("1azm", "5mnn"):
        again.get(root / cid)
    assert (again.hits, again.misses) == (2, 0)

    pocket = root / "5mnn" / "5mnn_pocket.pdb"
    lines = pocket.read_text().splitlines()
    pocket.write_text("\n".join(ln for ln in lines if " CB " not in ln) + "\n")
    st = pocket.stat()
    os.utime(pocket, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    changed = StructureCache(cache_dir, policy)
    rebuilt = changed.get(root / "5mnn")
    changed.get(root / "1azm")
    assert (changed.hits, changed.misses) == (1, 1)
    assert len(rebuilt.pocket_symbols) < 230

    other = StructureCache(cache_dir, AtomPolicy(max_atoms=100))
    assert len(other.get(root / "1azm").pocket_symbols) == 100 - 13
    assert other.misses == 1


# --- data inspect ------------------------------------------------------------------------------


@pytest.mark.slow
def test_data_inspect_json_on_the_real_sample(pdbbind_mini, tmp_path):
    result = run_cli("data", "inspect", str(pdbbind_mini), "--cache-dir", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    expected = reference_counts(pdbbind_mini)
    assert len(rows) == 20
    for row in rows:
        assert set(row) == {
            "id",
            "protein_atoms",
            "ligand_atoms",
            "label",
            "edges",
            "skipped",
            "cropped_from",
        }
        ref = expected[row["id"]]
        assert row["protein_atoms"] == int(ref["pocket_heavy_atoms"])
        assert row["ligand_atoms"] == int(ref["ligand_heavy_atoms"])
        assert row["skipped"] is None and row["label"] > 0
        assert row["cropped_from"] is None  # every complex of the sample has under 600 atoms
        # about 20 neighbours per atom within 5 A, capped at 32
        assert 10 < row["edges"] / (row["protein_atoms"] + row["ligand_atoms"]) < 32


def test_data_inspect_crop_and_cutoff(pdbbind_mini, tmp_path):
    rows = {
        s.id: s
        for s in inspect_root(
            pdbbind_mini, AtomPolicy(max_atoms=100), cutoff=4.0, cache_dir=tmp_path
        )
    }
    assert rows["6ud2"].protein_atoms + rows["6ud2"].ligand_atoms == 100
    whole = {s.id: s.protein_atoms + s.ligand_atoms for s in inspect_root(pdbbind_mini)}
    assert rows["6ud2"].cropped_from == whole["6ud2"] > 100  # named, with what it had
    again = {
        s.id: s for s in inspect_root(pdbbind_mini, AtomPolicy(max_atoms=100), cache_dir=tmp_path)
    }
    assert again["6ud2"].cropped_from == whole["6ud2"]  # read back from the cache
    wide = inspect_root(pdbbind_mini, AtomPolicy(max_atoms=100), cutoff=6.0, cache_dir=tmp_path)
    assert {s.id: s.edges for s in wide}["6ud2"] > rows["6ud2"].edges


@pytest.mark.slow
def test_data_inspect_reports_skips_and_strict_fails(pdbbind_mini, tmp_path):
    root = make_root(tmp_path, pdbbind_mini, ["1azm", "5mnn"])
    (root / "5mnn" / "5mnn_pocket.pdb").write_text("garbage\n")
    result = run_cli("data", "inspect", str(root), "--no-cache", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["id"]: r for r in json.loads(result.stdout)}
    assert rows["1azm"]["skipped"] is None
    assert "5mnn_pocket.pdb: no atoms" in rows["5mnn"]["skipped"]
    assert rows["5mnn"]["protein_atoms"] is None

    table = run_cli("data", "inspect", str(root), "--no-cache", "--max-atoms", "100")
    assert "from " in table.stdout and "cropped to --max-atoms 100" in table.stdout
    strict = run_cli("data", "inspect", str(root), "--no-cache", "--strict", "--json")
    assert strict.returncode == 2
    assert "5mnn_pocket.pdb" in strict.stderr and "strict" in strict.stderr
    assert strict.stdout == ""
