"""Masking of secret values: mask(), the logging filter on real records, and redact()."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from cadenza.engine._secrets import MASK, SecretMaskingFilter, mask, redact

SECRET = "pa55-w0rd!"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, SecretMaskingFilter, io.StringIO]]:
    """A real logger -> StreamHandler(StringIO) with the filter on the handler."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    masking = SecretMaskingFilter([SECRET])
    handler.addFilter(masking)
    logger = logging.getLogger("cadenza.test.masking")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        yield logger, masking, stream
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def test_mask_is_constant() -> None:
    assert mask("a") == mask("a much longer secret value") == MASK
    assert mask("") == MASK
    assert mask(None) is None


def test_secret_in_message_and_args_never_reaches_the_output(captured) -> None:
    logger, _, stream = captured
    logger.info("connecting with password " + SECRET)
    logger.info("connecting with password %s to %s", SECRET, "db.example")
    logger.info("dict args %(pw)s", {"pw": SECRET})
    logger.warning("repr arg %r", {"password": SECRET})
    logger.info("object %s", type("Cfg", (), {"__str__": lambda self: f"Cfg({SECRET})"})())
    logger.info("json %s", json.dumps({"pw": 'x"' + SECRET}))
    out = stream.getvalue()
    assert SECRET not in out
    assert out.count(MASK) == 6
    assert "to db.example" in out  # the rest of the message is kept


def test_secret_split_between_format_and_args_is_masked(captured) -> None:
    logger, _, stream = captured
    logger.info("token=pa55-%s", "w0rd!")
    assert SECRET not in stream.getvalue()
    assert MASK in stream.getvalue()


def test_secret_in_exception_text_is_masked(captured) -> None:
    logger, _, stream = captured
    try:
        raise RuntimeError(f"login failed for secret {SECRET}")
    except RuntimeError:
        logger.exception("step failed")
    logger.info("with stack", stack_info=True)
    out = stream.getvalue()
    assert "RuntimeError: login failed for secret " + MASK in out
    assert SECRET not in out


def test_escaped_forms_are_masked(captured) -> None:
    logger, masking, stream = captured
    tricky = 'q"uo\\te\nnl'
    masking.register(tricky)
    logger.info("repr %r", tricky)
    logger.info("json %s", json.dumps({"v": tricky}))
    out = stream.getvalue()
    assert json.dumps(tricky)[1:-1] not in out
    assert repr(tricky)[1:-1] not in out
    assert out.count(MASK) == 2


def test_longer_secret_containing_a_shorter_one_is_masked_whole(captured) -> None:
    logger, masking, stream = captured
    masking.register(SECRET + "-suffix")
    logger.info("value %s end", SECRET + "-suffix")
    assert stream.getvalue().strip() == f"INFO cadenza.test.masking value {MASK} end"


def test_register_unregister_is_reference_counted(captured) -> None:
    logger, masking, stream = captured
    masking.register("shared-value")
    masking.register("shared-value")
    masking.unregister("shared-value")
    logger.info("a shared-value")
    assert "shared-value" in masking
    masking.unregister("shared-value")
    assert "shared-value" not in masking
    logger.info("b shared-value")
    lines = stream.getvalue().splitlines()
    assert lines == [
        f"INFO cadenza.test.masking a {MASK}",
        "INFO cadenza.test.masking b shared-value",
    ]
    masking.unregister("never-registered")  # ignored
    masking.register("")  # ignored: an empty secret would mask nothing sensible
    assert len(masking) == 1


def test_concurrent_register_and_logging(captured) -> None:
    logger, masking, stream = captured
    values = [f"secret-{i:04d}-xyz" for i in range(200)]
    barrier = threading.Barrier(4)

    def worker(chunk: list[str]) -> None:
        barrier.wait()
        for value in chunk:
            masking.register(value)
            logger.info("using %s", value)

    threads = [threading.Thread(target=worker, args=(values[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(masking) == 201
    out = stream.getvalue()
    assert out.count(MASK) == 200
    assert not any(v in out for v in values)


def test_filter_without_secrets_leaves_records_alone(captured) -> None:
    logger, masking, stream = captured
    masking.unregister(SECRET)
    logger.info("100%% of %s", "rows")
    assert stream.getvalue() == "INFO cadenza.test.masking 100% of rows\n"


def test_redact_walks_json_like_structures() -> None:
    data = {
        "name": "nightly",
        "vars": [{"name": "DB_PW", "value": SECRET}, {"name": "N", "value": 3}],
        "url": f"postgres://app:{SECRET}@db/x",
        f"key-{SECRET}": True,
        "tuple": ("a", SECRET),
        "none": None,
        "password": "not-registered-but-key-masked",
        "Token": None,
    }
    out = redact(data, [SECRET], keys={"password", "token"})
    assert SECRET not in json.dumps(out)
    assert out["vars"][0]["value"] == MASK
    assert out["vars"][1]["value"] == 3
    assert out["url"] == f"postgres://app:{MASK}@db/x"
    assert out[f"key-{MASK}"] is True
    assert out["tuple"] == ["a", MASK]
    assert out["none"] is None
    assert out["password"] == MASK
    assert out["Token"] is None
    # The input is unchanged.
    assert data["vars"][0]["value"] == SECRET


def test_redact_without_secrets_returns_an_equal_copy() -> None:
    data = {"a": [1, "two", {"three": 3.0}]}
    out = redact(data, [])
    assert out == data and out is not data
