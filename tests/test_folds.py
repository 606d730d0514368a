"""Leave-people-out folds (calib/folds.py): no person in two folds, every image scored once; and
``--max-drift``'s person hold-out (calib/sampling.split_holdout)."""

from __future__ import annotations

import csv

import pytest

from matting_deploy.calib.folds import person_folds, persons_of
from matting_deploy.calib.sampling import split_holdout
from matting_deploy.data.sources import CalibItem
from matting_deploy.errors import MattingDeployError

PEOPLE = {"ann": 5, "bob": 4, "cy": 3, "dee": 3, "eve": 2, "fay": 1, "gus": 1}


def _folder(tmp_path, people=PEOPLE, column="person_photo"):
    (tmp_path / "image").mkdir()
    rows, n = [], 0
    for person, count in people.items():
        for _ in range(count):
            name = f"{n:03d}_{person}"
            (tmp_path / "image" / f"{name}.jpg").write_bytes(b"x")
            rows.append({"name": name, column: person, "background": f"bg{n % 3}"})
            n += 1
    with open(tmp_path / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return tmp_path


@pytest.mark.parametrize("k,seed", [(2, 0), (3, 0), (5, 0), (5, 1), (7, 2)])
def test_folds_never_share_a_person_and_score_every_image_once(tmp_path, k, seed):
    root = _folder(tmp_path)
    person = persons_of(root)
    folds = person_folds(root, k, seed)
    assert len(folds) == k
    scored = [s for f in folds for s in f.scored]
    assert sorted(scored) == sorted(person)  # every image once
    seen: set[str] = set()
    for f in folds:
        fold_people = {person[s] for s in f.scored}
        assert fold_people == set(f.persons) and fold_people
        assert not fold_people & seen  # no person in two folds
        seen |= fold_people
        assert not {person[s] for s in f.calibration} & fold_people  # calibration never sees them
        assert sorted(f.calibration + f.scored) == sorted(person)


def test_folds_balance_images(tmp_path):
    sizes = [len(f.scored) for f in person_folds(_folder(tmp_path), 3)]
    assert max(sizes) - min(sizes) <= 1


def test_folds_refuse_bad_k_and_unnamed_images(tmp_path):
    root = _folder(tmp_path, column="person")
    with pytest.raises(MattingDeployError, match="--folds"):
        person_folds(root, 8)
    (root / "image" / "999_stranger.jpg").write_bytes(b"x")
    with pytest.raises(MattingDeployError, match="999_stranger"):
        persons_of(root)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_max_drift_holdout_by_person_keeps_its_persons_out_of_calibration(tmp_path, seed):
    root = _folder(tmp_path)
    person = persons_of(root)
    items = [CalibItem(p.name, p) for p in sorted((root / "image").iterdir())]
    keep, held = split_holdout(items, 0.2, seed, person)
    held_people = {person[it.path.stem] for it in held}
    assert held and keep and sorted(keep + held, key=lambda it: it.name) == items
    assert not held_people & {person[it.path.stem] for it in keep}  # whole persons held out
    assert len(held) <= max(round(0.2 * len(items)), min(PEOPLE.values()))


def test_max_drift_holdout_needs_two_persons_else_holds_out_images(tmp_path):
    root = _folder(tmp_path, people={"ann": 6})
    items = [CalibItem(p.name, p) for p in sorted((root / "image").iterdir())]
    keep, held = split_holdout(items, 0.34, 0, persons_of(root))
    assert len(held) == 2 and len(keep) == 4  # one person only: images, as without a manifest
