"""Configuration errors of the sftp activity: each names its field, none reveals a secret.

Every case here must fail before any connection is attempted, so the host does not exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncssh
import pytest

from cadenza.activities._sftp import sftp_step
from cadenza.activities._sftp_config import SftpConfig, validate_sftp_config
from cadenza.history import ApplicationError, InvalidArgumentError

PASSWORD = "hunter2-but-longer"
HOST_KEY = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()


def cfg(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "host": "sftp.example.invalid",
        "username": "settlement",
        "password": PASSWORD,
        "host_key": HOST_KEY,
        "operation": "list",
        "path": "/out",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


async def config_failure(config: Any) -> ApplicationError:
    with pytest.raises(ApplicationError) as err:
        await sftp_step(config)
    error = err.value
    assert error.type == "InvalidSftpConfig"
    assert error.non_retryable
    assert PASSWORD not in str(error)
    assert PASSWORD not in repr(error.details)
    return error


def field_of(error: ApplicationError) -> str:
    return error.details[0]["field"]


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"host_key": None}, "known_hosts", "must be verified"),
        ({"host_key_fingerprint": "SHA256:" + "A" * 43}, "host_key_fingerprint", "only one"),
        ({"insecure_skip_host_key": True}, "insecure_skip_host_key", "cannot be combined"),
        ({"host_key": "ssh-ed25519 not-base64!"}, "host_key", "not an SSH public key"),
        (
            {"host_key": None, "host_key_fingerprint": "MD5:12:34"},
            "host_key_fingerprint",
            "SHA-256",
        ),
        (
            {"host_key": None, "known_hosts": "/home/batch/.ssh/known_hosts"},
            "known_hosts[line 1]",
            "ssh-keyscan",
        ),
        ({"host_key": None, "known_hosts": "# only a comment\n"}, "known_hosts", "no host key"),
        (
            {"host_key": None, "known_hosts": "sftp.bank.vn ssh-ed25519 AAAAbroken\n"},
            "known_hosts[line 1]",
            "not an SSH public key",
        ),
        ({"bogus": 1}, "bogus", "unknown field"),
        ({"port": "22"}, "port", "Expected `int`"),
        ({"port": 70000}, "port", "not a TCP port"),
        ({"host": "bad host"}, "host", "not a host name"),
        ({"username": None}, "username", "missing required"),
        ({"operation": None}, "operation", "missing required"),
        ({"operation": "chmod"}, "operation", "Invalid enum value"),
        ({"path": None}, "path", "missing required"),
        ({"path": " "}, "path", "must not be empty"),
        ({"path": "/out\n"}, "path", "line breaks"),
        ({"password": None}, "password", "password, a private_key, or both"),
        ({"passphrase": "x"}, "passphrase", "only used with private_key"),
        ({"timeout": 0}, "timeout", "positive"),
        ({"connect_timeout": -1}, "connect_timeout", "positive"),
        ({"pattern": "sub/*.csv"}, "pattern", "without '/'"),
        ({"max_files": 0}, "max_files", "positive"),
        ({"to": "/x"}, "to", "not used by operation 'list'"),
        ({"operation": "read", "path": "/out/", "max_bytes": 10}, "path", "must name a file"),
        ({"operation": "read", "path": "/f", "encoding": "klingon"}, "encoding", "not a known"),
        ({"operation": "read", "path": "/f", "max_bytes": -1}, "max_bytes", "positive"),
        ({"operation": "download", "path": "/f"}, "local_path", "required"),
        ({"operation": "upload", "path": "/f"}, "local_path", "exactly one"),
        (
            {"operation": "upload", "path": "/f", "text": "x", "local_path": "a"},
            "local_path",
            "exactly one",
        ),
        (
            {"operation": "upload", "path": "/f", "text": "x", "if_exists": "skip"},
            "if_exists",
            "not allowed for upload",
        ),
        (
            {"operation": "upload", "path": "/f", "text": "Đà Nẵng", "encoding": "ascii"},
            "text",
            "cannot be encoded as ascii",
        ),
        ({"operation": "move", "path": "/f"}, "to", "required"),
        ({"operation": "move", "path": "/f", "to": "/f"}, "to", "same path"),
        ({"operation": "delete", "path": "/f", "parents": True}, "parents", "only by mkdir"),
    ],
)
async def test_bad_field_is_named(overrides: dict[str, Any], field: str, reason: str) -> None:
    error = await config_failure(cfg(**overrides))
    assert field_of(error) == field
    assert reason in error.details[0]["reason"]
    assert str(error).startswith(f"invalid SFTP configuration: {field}: ")


async def test_config_must_be_a_mapping_or_struct() -> None:
    error = await config_failure(["not", "a", "config"])
    assert field_of(error) == "config"


async def test_local_path_outside_the_file_roots(local_root: Path) -> None:
    error = await config_failure(
        cfg(operation="download", path="/f.csv", local_path="/etc/cadenza-test.csv")
    )
    assert field_of(error) == "local_path"
    assert "outside the allowed file roots" in str(error)
    escape = await config_failure(
        cfg(operation="upload", path="/f.csv", local_path="../outside.csv")
    )
    assert field_of(escape) == "local_path"


async def test_private_key_errors_name_the_field_and_hide_the_key() -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    encrypted = key.export_private_key("pkcs8-pem", passphrase="correct-passphrase").decode()

    garbage = "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n" + (
        "-----END OPENSSH PRIVATE KEY-----\n"
    )
    error = await config_failure(cfg(password=None, private_key=garbage))
    assert field_of(error) == "private_key"
    assert "c2VjcmV0LWtleS1tYXRlcmlhbA" not in str(error)

    error = await config_failure(cfg(password=None, private_key=encrypted))
    assert field_of(error) == "passphrase"
    assert "encrypted" in str(error)

    error = await config_failure(
        cfg(password=None, private_key=encrypted, passphrase="wrong-passphrase")
    )
    assert field_of(error) == "passphrase"
    assert "wrong-passphrase" not in str(error)
    for line in encrypted.splitlines()[1:-1]:
        assert line not in str(error)


def test_repr_masks_every_secret() -> None:
    key = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
    config = SftpConfig(**cfg(private_key=key, passphrase="pass-phrase-1", text=None))
    shown = repr(config)
    assert PASSWORD not in shown
    assert "pass-phrase-1" not in shown
    assert "PRIVATE KEY" not in shown
    assert "password=••••••" in shown
    assert "host='sftp.example.invalid'" in shown


def test_validate_sftp_config_raises_invalid_argument() -> None:
    config = SftpConfig(**cfg(host_key=None))
    with pytest.raises(InvalidArgumentError) as err:
        validate_sftp_config(config)
    assert err.value.field == "known_hosts"
    validate_sftp_config(SftpConfig(**cfg()))  # a good one passes
