"""claims.lock: the committed lock is what the code gives, and a changed registered version is caught and named.

A criteria version is frozen once registered: its values (the dataclass's fields) and its judge. These tests
change one in memory (a value through ``dataclasses.replace`` into the registry, a class with another default, a
judge with other source, a removed version) and check that ``check`` names the claim and version and that
``write`` refuses, while a brand-new version is added."""
from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from eoslib.claims import CLAIMS, lock
from eoslib.claims import __main__ as cli
from eoslib.claims import c1
from eoslib.claims.framework import Version

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def lock_copy(tmp_path):
    """A copy of the committed lock, to write into."""
    path = tmp_path / "claims.lock"
    shutil.copy(REPO / "eoslib" / "claims" / "claims.lock", path)
    return path


def test_committed_lock_is_the_codes():
    assert lock.LOCK_FILE == REPO / "eoslib" / "claims" / "claims.lock"
    assert lock.check() == [], "claims.lock differs from the code: see `python -m eoslib claims-lock --check`"
    locked = json.loads((REPO / "eoslib" / "claims" / "claims.lock").read_text())["claims"]
    assert {k: sorted(v) for k, v in locked.items()} == {k: [f"v{n}" for n in sorted(c.versions)]
                                                        for k, c in CLAIMS.items()}
    assert locked["C1"]["v1"]["values"] == {"ratio_band": [0.8, 1.25], "tail_fraction": 0.25, "min_sharpening": 5.0}


def test_a_lock_written_from_scratch_is_the_committed_one(tmp_path):
    path = tmp_path / "claims.lock"
    added = lock.write(path)
    assert len(added) == sum(len(c.versions) for c in CLAIMS.values()) and "C1 v1" in added
    assert path.read_text() == (REPO / "eoslib" / "claims" / "claims.lock").read_text()  # sorted, deterministic
    assert lock.write(path) == [] and lock.check(path) == []


def replace_version(monkeypatch, key: str, number: int, **changes) -> None:
    v = CLAIMS[key].versions[number]
    monkeypatch.setitem(CLAIMS[key].versions, number, dataclasses.replace(v, **changes))


def test_a_changed_criteria_value_is_named_and_refused(monkeypatch, lock_copy):
    v1 = CLAIMS["C1"].versions[1]
    replace_version(monkeypatch, "C1", 1, criteria=dataclasses.replace(v1.criteria, tail_fraction=0.3))
    found = lock.check(lock_copy)
    assert [(m.claim, m.version, m.kind) for m in found] == [("C1", "v1", "criteria")]
    assert "tail_fraction: 0.25 → 0.3" in str(found[0]) and "add a new version instead" in str(found[0])
    before = lock_copy.read_text()
    with pytest.raises(lock.LockError, match=r"C1 v1: criteria changed.*add a new version instead"):
        lock.write(lock_copy)
    assert lock_copy.read_text() == before


def test_a_changed_class_default_is_named(monkeypatch, lock_copy):
    """Editing a registered class's default (here: a class of the same name with another default) is a change."""
    @dataclass(frozen=True)
    class V1(c1.V1):
        min_sharpening: float = 4.0

    replace_version(monkeypatch, "C1", 1, criteria=V1())
    found = lock.check(lock_copy)
    assert [(m.claim, m.version, m.kind) for m in found] == [("C1", "v1", "criteria")]
    assert "min_sharpening: 5.0 → 4.0" in str(found[0])


def test_a_changed_judge_source_is_named_and_refused(monkeypatch, lock_copy):
    def judge_v1(params, root, c, fits=None) -> dict:  # a different judge under the same name
        return {"verdict": "holds", "measured": {}, "summary": ""}

    replace_version(monkeypatch, "layers", 2, judge=judge_v1)
    found = lock.check(lock_copy)
    assert [(m.claim, m.version, m.kind) for m in found] == [("layers", "v2", "source")]
    with pytest.raises(lock.LockError, match=r"layers v2: the source of its judge.*add a new version instead"):
        lock.write(lock_copy)


def test_every_mismatch_is_reported(monkeypatch, lock_copy):
    replace_version(monkeypatch, "C2", 2,
                    criteria=dataclasses.replace(CLAIMS["C2"].versions[2].criteria, min_order=0.5))
    replace_version(monkeypatch, "split", 1, criteria=dataclasses.replace(CLAIMS["split"].versions[1].criteria,
                                                                         min_ggn_ratio=0.8))
    monkeypatch.delitem(CLAIMS["sensitivity"].versions, 1)
    found = {(m.claim, m.version, m.kind) for m in lock.check(lock_copy)}
    assert found == {("C2", "v2", "criteria"), ("split", "v1", "criteria"), ("sensitivity", "v1", "removed")}
    with pytest.raises(lock.LockError) as e:
        lock.write(lock_copy)
    assert all(s in str(e.value) for s in ("C2 v2", "split v1", "sensitivity v1"))


def test_a_new_version_is_added(monkeypatch, lock_copy):
    @dataclass(frozen=True)
    class V3(c1.V2):
        min_in_band: float = 0.6

    monkeypatch.setitem(CLAIMS["C1"].versions, 3, Version(3, V3(), CLAIMS["C1"].versions[2].judge))
    found = lock.check(lock_copy)
    assert [(m.claim, m.version, m.kind) for m in found] == [("C1", "v3", "unlocked")]
    before = json.loads(lock_copy.read_text())["claims"]
    assert lock.write(lock_copy) == ["C1 v3"]
    after = json.loads(lock_copy.read_text())["claims"]
    assert after["C1"]["v3"]["values"]["min_in_band"] == 0.6 and after["C1"]["v3"]["class"] == "V3"
    assert {k: v for k, v in after["C1"].items() if k != "v3"} == before["C1"]
    assert {k: v for k, v in after.items() if k != "C1"} == {k: v for k, v in before.items() if k != "C1"}
    assert lock.check(lock_copy) == []


def test_formatting_and_comments_do_not_count_as_changes():
    src = lock.normalised_source(test_formatting_and_comments_do_not_count_as_changes)
    assert src.startswith("def test_formatting") and "\n\n" not in src
    assert not any(line.lstrip().startswith("#") for line in src.splitlines())
    # a comment-only line (this one) and the blank line below are not part of the hash

    assert "comment" + "-only line" not in src  # (spelt apart so that this line does not contain it)


def test_lock_command(monkeypatch, lock_copy, capsys):
    assert cli.main(["lock", "--check", "--lock-file", str(lock_copy)]) == 0
    replace_version(monkeypatch, "C4", 2, criteria=dataclasses.replace(CLAIMS["C4"].versions[2].criteria,
                                                                      aicc_threshold=4.0))
    assert cli.main(["lock", "--check", "--lock-file", str(lock_copy)]) == 1
    assert cli.main(["lock", "--lock-file", str(lock_copy)]) == 1
    err = capsys.readouterr().err
    assert "C4 v2: criteria changed (aicc_threshold: 2.0 → 4.0)" in err and "add a new version instead" in err
