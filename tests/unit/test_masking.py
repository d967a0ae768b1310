"""masking.py: secret values out of messages and log records (message, arguments, tracebacks)."""

from __future__ import annotations

import base64
import io
import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jupyternetes.app.logsetup import JsonFormatter
from jupyternetes.engine import masking

TOKEN = "s3cr3t-t0ken-value"


def logger_with(mask: masking.MaskingFilter,
                formatter: logging.Formatter | None = None) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter or logging.Formatter("%(name)s %(message)s"))
    masking.install(handler, mask)
    masking.install(handler, mask)  # once only
    assert handler.filters.count(mask) == 1
    log = logging.getLogger(f"test-masking-{id(out)}")
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG)
    log.propagate = False
    return log, out


def test_message_arguments_and_traceback_are_masked():
    mask = masking.MaskingFilter([TOKEN])
    log, out = logger_with(mask)
    log.debug("token is %s", TOKEN)
    log.info(f"inline {TOKEN} and base64 {base64.b64encode(TOKEN.encode()).decode()}")
    try:
        raise RuntimeError(f"failed with {TOKEN}")
    except RuntimeError:
        log.exception("operation %s raised", "up")
    text = out.getvalue()
    assert TOKEN not in text and base64.b64encode(TOKEN.encode()).decode() not in text
    assert text.count(masking.SECRET_MASK) == 4
    assert "RuntimeError: failed with [secret]" in text
    assert "operation up raised" in text


def test_values_learned_later_are_masked_from_then_on():
    mask = masking.MaskingFilter()
    log, out = logger_with(mask)
    log.info("before %s", TOKEN)
    mask.add([TOKEN, ""])
    log.info("after %s", TOKEN)
    lines = out.getvalue().splitlines()
    assert lines[0].endswith(TOKEN) and lines[1].endswith(masking.SECRET_MASK)


def test_json_formatter_prints_the_masked_traceback():
    log, out = logger_with(masking.MaskingFilter([TOKEN]), JsonFormatter())
    try:
        raise ValueError(TOKEN)
    except ValueError:
        log.error("boom", exc_info=True, extra={"instance": f"ns/{TOKEN}"})
    doc = json.loads(out.getvalue())
    assert "ValueError: [secret]" in doc["exc"] and doc["instance"] == "ns/[secret]"
    assert TOKEN not in out.getvalue()


# Secret values from characters the mask does not use, so no value can be part of the mask.
VALUE = st.text(alphabet="ABCDEFGHIJ0123456789-_.:/+=é", min_size=1, max_size=12)


@given(st.lists(VALUE, max_size=4), st.lists(st.text(max_size=8), max_size=5))
def test_no_value_survives_masking(values, fillers):
    text = "".join(f"{filler}{value}" for filler, value in zip(fillers, values * 2, strict=False))
    masked = masking.mask_secrets(text, values)
    for value in values:
        assert value not in masked


@pytest.mark.parametrize("values", [[], [""]])
def test_nothing_to_mask_leaves_records_alone(values):
    log, out = logger_with(masking.MaskingFilter(values))
    log.info("plain %s", "text")
    assert out.getvalue() == f"{log.name} plain text\n"


def test_trim_message_reads_a_command_errors_stderr_lines_without_their_labels():
    # str(pulumi.automation.CommandError): code, stdout and stderr, each labelled.
    dump = ("\n code: 255\n stdout: \n stderr: error: could not list bucket: blob "
            "(code=Unknown): dial tcp 127.0.0.1:5432: connect: connection refused\n")
    assert masking.trim_message([], dump) == (
        "could not list bucket: blob (code=Unknown): dial tcp 127.0.0.1:5432: connect: "
        "connection refused")


# ---- a bounded mask whose cost per record does not grow with the number of users -------------


@given(st.lists(VALUE, max_size=6), st.lists(st.text(max_size=8), max_size=7))
def test_no_value_survives_the_indexed_masker(values, fillers):
    text = "".join(f"{filler}{value}" for filler, value in zip(fillers, values * 2, strict=False))
    masker = masking.Masker(v for v in values if v)
    assert masker.forms() == {v for v in values if v}
    masked = masker.mask(text)
    for value in values:
        assert value not in masked


def test_set_replaces_an_owners_values_and_drop_removes_them():
    mask = masking.MaskingFilter()
    mask.add(["backend-password"])
    mask.set("ns/a", ["token-a-1"])
    mask.set("ns/b", ["token-b-1"])
    assert mask.mask("token-a-1 token-b-1 backend-password") == " ".join(
        [masking.SECRET_MASK] * 3)
    mask.set("ns/a", ["token-a-2"])  # the Secret changed: the old value is no longer kept
    assert mask.mask("token-a-1 token-a-2") == f"token-a-1 {masking.SECRET_MASK}"
    mask.drop("ns/b")
    mask.drop("ns/b")  # twice: nothing happens
    assert mask.mask("token-b-1") == "token-b-1"
    mask.set("ns/a", [])
    assert mask.forms() == masking.mask_forms(["backend-password"]) and mask.size() == 2
    assert mask._masker.prefixes.keys() == {f[:masking.INDEX_PREFIX] for f in mask.forms()}
    assert mask._masker.lengths == tuple(sorted({len(f) for f in mask.forms()}, reverse=True))


def test_a_value_two_owners_hold_stays_masked_until_both_let_go():
    mask = masking.MaskingFilter()
    mask.set("ns/a", ["shared-token"])
    mask.set("ns/b", ["shared-token", "abc"])
    mask.drop("ns/a")
    assert mask.mask("shared-token abc") == f"{masking.SECRET_MASK} {masking.SECRET_MASK}"
    mask.drop("ns/b")
    assert mask.mask("shared-token abc") == "shared-token abc" and mask.size() == 0


class CountingIndex(dict):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lookups = 0

    def get(self, key, default=None):
        self.lookups += 1
        return super().get(key, default)


@pytest.mark.parametrize("users", [10, 10_000])
def test_a_records_cost_is_one_lookup_per_character_whatever_the_number_of_users(users):
    mask = masking.MaskingFilter()
    for n in range(users):  # one prefix for all: the worst case for a prefix index
        mask.set(f"users/{n}", [f"hub-token-{n:08d}-{'x' * 16}"])
    masker = mask._masker
    masker.prefixes = CountingIndex(masker.prefixes)  # the readers' path: prefixes.get
    text = f"instance users/7: up failed: hub-token-{7:08d}-{'x' * 16} rejected by the apiserver"
    masked = mask.mask(text)
    assert masked == f"instance users/7: up failed: {masking.SECRET_MASK} rejected by the apiserver"
    assert masker.prefixes.lookups <= len(text) and not masker.short
    assert len(masker.lengths) == 2  # the token's and its base64 form's: per hit, two lookups
