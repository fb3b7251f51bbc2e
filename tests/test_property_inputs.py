"""Property-based and fuzz tests of the input boundary: the CSV loader and config validation either
succeed with consistent, finite results or raise UserError, never anything else."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from vaeok.config.compose import load_config
from vaeok.core.errors import UserError
from vaeok.data.datasets import load_csv

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# cells: plain numbers mostly, with the things real files contain
_CELL = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda v: f"{v:g}"),
    st.integers(-1000, 1000).map(str),
    st.sampled_from(["", "NaN", "nan", "NA", "inf", "-inf", "abc", "1,5", " 3 ", '"4"', "1e400", "-", "1_0"]),
)


@st.composite
def frames(draw: st.DrawFn) -> tuple[list[str], list[list[str]], str]:
    """A small table of cell strings (some columns constant), and a delimiter."""
    n_cols = draw(st.integers(1, 4))
    n_rows = draw(st.integers(0, 14))
    names = [f"c{j}" for j in range(n_cols)] + ["y"]
    rows = [[draw(_CELL) for _ in names] for _ in range(n_rows)]
    for j in draw(st.sets(st.integers(0, n_cols), max_size=2)):  # constant columns
        for row in rows:
            row[j] = "1"
    return names, rows, draw(st.sampled_from([",", ";", "\t"]))


def _check_dataset(d: object) -> None:
    X, y = d.X, d.y  # type: ignore[attr-defined]
    assert X.ndim == 2 and y.ndim == 1 and X.shape[0] == y.shape[0] >= 10
    assert X.shape[1] == len(d.feature_names) >= 1  # type: ignore[attr-defined]
    assert np.isfinite(X).all() and np.isfinite(y).all()
    assert (np.ptp(X, axis=0) > 0).all() and np.ptp(y) > 0


@SETTINGS
@given(frames())
def test_csv_loader_returns_a_finite_dataset_or_user_error(tmp_path: Path, table: tuple) -> None:
    names, rows, sep = table
    text = "\n".join([sep.join(names), *(sep.join(r) for r in rows)]) + "\n"
    path = tmp_path / "f.csv"
    path.write_text(text)
    try:
        d = load_csv(path, "y")
    except UserError as exc:
        assert "\n" not in str(exc)
        return
    _check_dataset(d)


@SETTINGS
@given(st.integers(10, 40), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_clean_numeric_frames_always_load(tmp_path: Path, n: int, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n, k + 1)) * 10.0 ** rng.integers(-3, 4)
    path = tmp_path / "ok.csv"
    lines = [",".join([*(f"f{j}" for j in range(k)), "y"]), *(",".join(repr(float(v)) for v in row) for row in values)]
    path.write_text("\n".join(lines))
    d = load_csv(path, "y")
    _check_dataset(d)
    np.testing.assert_array_equal(d.X, values[:, :k])


# --- config validation ------------------------------------------------------------------------
NUMERIC_KEYS = ["model.hidden", "model.latent", "model.lr", "model.beta", "model.n_layers", "data.batch_size",
                "trainer.max_epochs", "generator.n_virtual", "evaluation.n_splits", "evaluation.n_repeats",
                "evaluation.holdout_fraction", "labeler.nugget", "labeler.max_points", "data.max_rows"]
_VALUE = st.one_of(
    st.integers(-10, 10), st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["abc", "", "null", "1e999", "-0", "[1,2]", "{a: 1}", "true", "0x10", "'5'"]),
)


def _render(v: object) -> str:
    return repr(v) if isinstance(v, float) else str(v)


@SETTINGS
@pytest.mark.slow  # end-to-end, >10 s: run by `make test` and CI
@given(st.lists(st.tuples(st.sampled_from(NUMERIC_KEYS), _VALUE), min_size=1, max_size=3))
@example([("generator.n_virtual", "abc")])  # found by hypothesis: the generator group is untyped
@example([("generator.n_virtual", 1.5)])
def test_config_overrides_validate_or_raise_user_error(pairs: list[tuple[str, object]]) -> None:
    overrides = [f"{k}={_render(v)}" for k, v in pairs]
    try:
        cfg = load_config(overrides)
    except UserError as exc:
        assert "\n" not in str(exc)
        return
    assert cfg.model.lr > 0 and cfg.model.hidden >= 1 and cfg.data.batch_size >= 1
    assert np.isfinite(cfg.model.lr) and np.isfinite(cfg.model.beta)


# --- fuzz: random bytes and mutations of a valid CSV ------------------------------------------------
_VALID = ("a,b,y\n" + "\n".join(f"{i * 0.37 % 5:.3f},{i * 1.3 % 7:.3f},{i * 2.1:.2f}" for i in range(20))
          + "\n").encode()
_INTERESTING = [b",", b";", b"\t", b"\n", b"\r", b'"', b"\x00", b"\xef\xbb\xbf", b"\xff\xfe", b"\xe9", b"nan", b"inf",
                b"", b"-", b"e", b"1e999", b"\x85", b"\xc3"]


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(4)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            del buf[pos % len(buf)]
        elif op == 1:
            buf[pos:pos] = rng.choice(_INTERESTING)
        elif op == 2 and buf:
            buf[pos % len(buf)] = rng.randrange(256)
        else:
            cut = rng.randrange(len(buf) + 1)
            buf = buf[:cut] + buf[cut:][: rng.randrange(len(buf) + 1)]
    return bytes(buf)


@pytest.mark.parametrize("seed", [0, 1])
def test_fuzz_csv_bytes_only_user_errors(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    path = tmp_path / "fuzz.csv"
    outcomes = {"ok": 0, "user_error": 0}
    for i in range(200):
        if i % 4 == 0:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
        else:
            data = _mutate(rng, _VALID)
        path.write_bytes(data)
        try:
            d = load_csv(path, "y")
        except UserError as exc:
            assert "\n" not in str(exc), (data, exc)
            outcomes["user_error"] += 1
            continue
        except Exception as exc:  # pragma: no cover - the failure report
            pytest.fail(f"{type(exc).__name__}: {exc} on input {data!r}")
        _check_dataset(d)
        outcomes["ok"] += 1
    assert outcomes["ok"] > 0 and outcomes["user_error"] > 0, outcomes
