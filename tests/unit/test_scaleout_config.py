"""[database] and [[nodes]]: parsing, node views of the home, Orthanc's PostgreSQL keys."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from archive.config import (
    NODE_ENV,
    NodePaths,
    database_password,
    for_node,
    load_config,
    parse_config,
)
from archive.errors import ConfigError
from archive.paths import HomePaths
from archive.serve import orthanc_config

BASE = {"http": {"port": 8042}, "dicom": {"port": 4242}}


def _config(tmp_path: Path, **extra):
    return parse_config({**BASE, **extra}, HomePaths(tmp_path))


def test_default_is_sqlite_and_renders_no_postgresql(tmp_path):
    config = _config(tmp_path)
    assert config.database.kind == "sqlite"
    rendered = orthanc_config.render(config)
    assert rendered["Plugins"] == [str(orthanc_config.PYTHON_PLUGIN)]
    assert rendered["PostgreSQL"]["EnableIndex"] is False


def test_dsn_fills_fields_and_explicit_keys_win(tmp_path):
    config = _config(
        tmp_path,
        database={
            "kind": "postgresql",
            "dsn": "postgresql://ta@db.example:6543/teach",
            "user": "x",
        },
    )
    db = config.database
    assert (db.host, db.port, db.database, db.user) == ("db.example", 6543, "teach", "x")


def test_dsn_with_password_refused_without_echoing_it(tmp_path):
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, database={"kind": "postgresql", "dsn": "postgresql://u:s3cr3t@h/d"})
    assert "s3cr3t" not in str(info.value)


@pytest.mark.parametrize(
    "database",
    [{"kind": "mysql"}, {"kind": "postgresql", "port": 0}, {"kind": "postgresql", "ssl": "yes"}],
)
def test_bad_database_refused(tmp_path, database):
    with pytest.raises(ConfigError):
        _config(tmp_path, database=database)


def test_postgresql_render_shares_index_keeps_storage(tmp_path):
    config = _config(tmp_path, database={"kind": "postgresql", "host": "127.0.0.1", "port": 5433})
    rendered = orthanc_config.render(config)
    assert str(orthanc_config.POSTGRESQL_INDEX_PLUGIN) in rendered["Plugins"]
    pg = rendered["PostgreSQL"]
    assert pg["EnableIndex"] is True and pg["EnableStorage"] is False and pg["Lock"] is False
    assert pg["Port"] == 5433 and "Password" not in pg
    assert rendered["StorageDirectory"] == str(config.home.storage_dir)


def test_nodes_need_postgresql_and_ports(tmp_path):
    with pytest.raises(ConfigError, match="shared index"):
        for_node(_config(tmp_path), 2, http_port=9000, dicom_port=9001)
    config = _config(
        tmp_path,
        database={"kind": "postgresql"},
        nodes=[{"id": 2, "http_port": 8043, "dicom_port": 4243}],
    )
    with pytest.raises(ConfigError, match="no ports"):
        for_node(config, 3)
    two = for_node(config, 2)
    assert (two.http.port, two.dicom.port, two.node) == (8043, 4243, 2)
    assert two.home.run_dir == tmp_path / "run" / "node-2"
    assert two.home.lock_file == tmp_path / "run" / "node-2" / "serve.lock"
    assert two.home.orthanc_log.parent == two.home.run_dir
    assert two.home.orthanc_config != config.home.orthanc_config
    assert two.home.db_path == config.home.db_path  # shared data
    assert two.home.storage_dir == config.home.storage_dir
    assert NodePaths(tmp_path).run_dir == config.home.run_dir  # node 1 is the plain home
    assert for_node(config, 2, http_port=9100).http.port == 9100


def test_node_ports_must_not_clash(tmp_path):
    with pytest.raises(ConfigError, match="clash"):
        _config(tmp_path, nodes=[{"id": 2, "http_port": 8042, "dicom_port": 4243}])


def test_plugin_sees_its_node_from_the_environment(tmp_path, monkeypatch):
    (tmp_path / "archive.toml").write_text(
        '[http]\nport = 8042\n[dicom]\nport = 4242\n[database]\nkind = "postgresql"\n'
        "[[nodes]]\nid = 2\nhttp_port = 8043\ndicom_port = 4243\n"
    )
    monkeypatch.setenv(NODE_ENV, "2")
    config = load_config(tmp_path)
    assert config.node == 2 and config.http.port == 8043
    monkeypatch.setenv(NODE_ENV, "1")
    assert load_config(tmp_path).node == 1


def test_password_file_must_be_private(tmp_path):
    secret = tmp_path / "pg.pw"
    secret.write_text("pa:ss\n")
    config = _config(tmp_path, database={"kind": "postgresql", "password_file": str(secret)})
    os.chmod(secret, 0o644)
    with pytest.raises(ConfigError, match="chmod 600") as info:
        database_password(config)
    assert "pa:ss" not in str(info.value)
    os.chmod(secret, 0o600)
    assert database_password(config) == "pa:ss"
    secret.write_bytes(b"\xff\xfe not text")
    with pytest.raises(ConfigError, match="readable file holding the password"):
        database_password(config)
    secret.unlink()
    secret.mkdir(mode=0o700)  # a directory by mistake: one message, no traceback
    with pytest.raises(ConfigError, match="readable file holding the password"):
        database_password(config)


def test_pgpass_escapes_and_is_private(tmp_path):
    from archive.serve import server

    config = for_node(
        _config(tmp_path, database={"kind": "postgresql"}), 2, http_port=9000, dicom_port=9001
    )
    path = server.write_pgpass(config, "a:b\\c")
    assert path.parent == tmp_path / "run" / "node-2"
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text() == "*:*:orthanc:orthanc:a\\:b\\\\c\n"
    env = server.orthanc_environment(config)
    assert env[NODE_ENV] == "2" and "PGPASSWORD" not in env
