"""CURVE keys derived from a shared secret file (serl_gs.transport.auth, serl_gs.transport.secret)."""

from __future__ import annotations

import os
import stat

import pytest

from serl_gs.transport.auth import load_curve_keys, write_secret_file
from serl_gs.transport.config import AuthConfig


def test_keys_derive_from_the_secret_file(tmp_path):
    path = tmp_path / "secret"
    write_secret_file(str(path))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with pytest.raises(FileExistsError):
        write_secret_file(str(path))  # never overwrites
    keys = load_curve_keys(AuthConfig(secret_file=str(path)))
    again = load_curve_keys(AuthConfig(secret_file=str(path)))
    assert keys == again and len(keys.server_public) == 40
    assert len({keys.server_public, keys.server_secret, keys.client_public, keys.client_secret}) == 4
    other = tmp_path / "other"
    write_secret_file(str(other))
    assert load_curve_keys(AuthConfig(secret_file=str(other))).client_public != keys.client_public
    assert load_curve_keys(AuthConfig()) is None


def test_unusable_secret_files_raise_value_error(tmp_path):
    short = tmp_path / "short"
    short.write_bytes(b"tiny")
    with pytest.raises(ValueError, match="need >= 16"):
        load_curve_keys(AuthConfig(secret_file=str(short)))
    with pytest.raises(ValueError, match="cannot be read"):
        load_curve_keys(AuthConfig(secret_file=str(tmp_path / "missing")))


def test_the_secret_entry_point_writes_a_private_file(tmp_path, capsys):
    from serl_gs.transport import secret

    path = tmp_path / "node.secret"
    secret.main([str(path)])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and len(path.read_text().strip()) == 64
    assert "wrote" in capsys.readouterr().out
    assert load_curve_keys(AuthConfig(secret_file=str(path))) is not None
