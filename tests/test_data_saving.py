"""Directory swaps that a crash cannot leave half-written (serl_gs.data.saving)."""

from __future__ import annotations

from serl_gs.data.saving import existing_directory, replace_directory


def _folder(path, text):
    path.mkdir()
    (path / "f").write_text(text)
    return path


def test_replace_directory_swaps_in_the_new_folder_and_leaves_no_twin(tmp_path):
    final = _folder(tmp_path / "replay", "old")
    replace_directory(_folder(tmp_path / "replay.tmp", "new"), final)
    assert (final / "f").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["replay"]
    replace_directory(_folder(tmp_path / "first.tmp", "first"), tmp_path / "fresh")  # nothing to replace
    assert (tmp_path / "fresh" / "f").read_text() == "first"


def test_existing_directory_finds_the_old_twin_when_a_crash_fell_between_the_renames(tmp_path):
    final = tmp_path / "replay"
    assert existing_directory(final) is None
    _folder(tmp_path / "replay.old", "kept")  # the old copy renamed away, the new one not renamed in yet
    assert existing_directory(final) == tmp_path / "replay.old"
    _folder(final, "new")
    assert existing_directory(final) == final
