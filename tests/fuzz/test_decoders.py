"""Every decoder, fuzzed: a clean decode or :class:`~tessera.errors.DecodeError`, never another
exception, for random bytes, mutated valid encodings and mutated valid JSON (property-based,
derandomised). ``run_atheris.py`` runs the same table coverage-guided; a short run of it
is here too, the long one is recorded in ``docs/reliability.md``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from decoders import Decoder, check, decoders
from hypothesis import given, settings
from hypothesis import strategies as st
from mutations import mutated_bytes, mutated_json

from tessera.errors import DecodeError
from tessera.node.envelope import decode_body
from tessera.protocol import json_limits

DECODERS = decoders()
EXAMPLES = int(os.environ.get("TESSERA_FUZZ_EXAMPLES", "2")) * 8


def _inputs(decoder: Decoder) -> st.SearchStrategy[bytes]:
    seeds = decoder.seeds()
    mutated = st.sampled_from(seeds).flatmap(mutated_bytes)
    if decoder.json:
        mutated = mutated | st.sampled_from(seeds).flatmap(mutated_json)
    return st.binary(max_size=256) | st.sampled_from(seeds) | mutated


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_a_decoder_decodes_or_raises_decode_error(name: str) -> None:
    decoder = DECODERS[name]

    @settings(settings.get_profile("fuzz"), max_examples=EXAMPLES)
    @given(_inputs(decoder))
    def run(data: bytes) -> None:
        check(decoder, data)

    run()


def test_every_seed_is_a_valid_input_somewhere() -> None:
    """The seeds are real encodings: most decode cleanly (so mutations start deep)."""
    clean = 0
    for d in DECODERS.values():
        for seed in d.seeds():
            try:
                d.decode(seed)
                clean += 1
            except DecodeError:
                pass
    assert clean >= 40


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (b'{"a": %s}' % (b"1" * 4301), "an integer of 4301 digits (at most 4300)"),
        (b'{"a": -%s}' % (b"9" * 5000), "an integer of 5000 digits"),
        (b'{"a": 1e999999}', "not finite"),
        (b'{"a": -1e400}', "not finite"),
        (b'{"a": NaN}', "NaN is not JSON"),
        (b'{"a": Infinity}', "Infinity is not JSON"),
        (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
    ],
    ids=["4301-digits", "5000-digits-negative", "1e999999", "-1e400", "nan", "inf", "dup"],
)
def test_strict_json_names_the_problem(text: bytes, problem: str) -> None:
    with pytest.raises(DecodeError, match=re.escape(problem)):
        json_limits.loads(text)
    with pytest.raises(DecodeError, match="malformed JSON body: .*" + re.escape(problem)):
        decode_body(text)


def test_the_longest_integer_allowed_decodes() -> None:
    assert json_limits.loads(b"[%s]" % (b"7" * 4300)) == [int("7" * 4300)]


def test_atheris_runs_every_decoder_briefly() -> None:
    """A short coverage-guided run of every decoder: inputs run and 0 crashes each."""
    script = Path(__file__).with_name("run_atheris.py")
    out = subprocess.run(
        [sys.executable, str(script), "--together", "--inputs", "100", "--seconds", "15", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    assert set(report["decoders"]) == set(DECODERS)
    for name, row in report["decoders"].items():
        assert row["crashes"] == 0, (name, row)
        assert row["inputs"] >= 1, (name, row)  # the first byte splits them unevenly
