"""Synthetic tasks (teacher-student, Markov language) and user token files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pytest_scaling.tasks import Task, markov_language, teacher_student, text_files, token_file

SMALL_MARKOV = dict(vocab=16, seq_len=12, branching=3)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def token_path(tmp_path: Path) -> Path:
    path = tmp_path / "train.bin"
    (np.arange(1000) * 7 % 50).astype(np.uint16).tofile(path)
    return path


@pytest.fixture(params=["teacher_student", "markov_order1", "markov_order2", "token_file", "text_files"])
def make_task(request, token_path: Path):
    """A factory of fresh, equal task instances."""
    return {
        "teacher_student": lambda: teacher_student(input_dim=8, n_classes=5, teacher_width=16),
        "markov_order1": lambda: markov_language(**SMALL_MARKOV),
        "markov_order2": lambda: markov_language(**SMALL_MARKOV, order=2),
        "token_file": lambda: token_file(token_path, seq_len=16),
        "text_files": lambda: text_files(seq_len=16),
    }[request.param]


def test_batches_are_deterministic(make_task) -> None:
    first, second = make_task(), make_task()
    assert first == second and first.config() == second.config()
    x1, y1 = first.batch(8, _gen(0))
    x2, y2 = second.batch(8, _gen(0))
    x3, _ = second.batch(8, _gen(1))
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, x3)


def test_shapes_and_dtypes(make_task) -> None:
    task: Task = make_task()
    x, y = task.batch(8, _gen(0))
    assert y.dtype == torch.int64 and int(y.min()) >= 0 and int(y.max()) < task.n_outputs
    if task.input_kind == "features":
        assert task.seq_len is None
        assert x.dtype == torch.float32 and x.shape == (8, task.input_dim) and y.shape == (8,)
    else:
        assert task.input_kind == "tokens" and task.input_dim == task.n_outputs
        assert x.dtype == torch.int64 and x.shape == y.shape == (8, task.seq_len)
        assert torch.equal(x[:, 1:], y[:, :-1]) and int(x.max()) < task.input_dim


def test_config_is_json_and_name_shows_arguments(make_task) -> None:
    task = make_task()
    assert json.loads(json.dumps(task.config())) == task.config()
    assert task.name.startswith(task.config()["task"] + "(")


@pytest.mark.parametrize("order", [1, 2])
def test_markov_floor_matches_monte_carlo(order: int) -> None:
    """The exact floor equals the mean −log p(y | prefix) under the true chain, within 3 standard errors."""
    task = markov_language(**SMALL_MARKOV, order=order)
    x, y = task.batch(4096, _gen(5))
    nll = -task.true_log_probs(x).gather(2, y[..., None]).squeeze(-1)
    per_sequence = nll.mean(dim=1)
    stderr = per_sequence.std().item() / math.sqrt(len(per_sequence))
    assert abs(per_sequence.mean().item() - task.loss_floor) < 3 * stderr
    assert task.loss_floor_stderr == 0.0
    if order == 1:
        assert task.loss_floor == pytest.approx(task.entropy_rate, rel=1e-12)
    else:  # the first target sees one token, less than a full context
        assert task.loss_floor > task.entropy_rate
        first = nll[:, 0].mean().item()
        assert abs(first - task.loss_floor) > abs(nll[:, 1:].mean().item() - task.entropy_rate)


def test_markov_chain_structure() -> None:
    task = markov_language(**SMALL_MARKOV, order=2)
    token_marginal = task.stationary.reshape(task.vocab, task.vocab).sum(0)
    assert bool((token_marginal > 0).all()), "every token occurs"
    torch.testing.assert_close(task.probs.sum(1), torch.ones(task.vocab**2, dtype=torch.float64))
    assert task.successors.shape == (task.vocab**2, task.branching)
    assert markov_language(**{**SMALL_MARKOV, "branching": 1}).loss_floor == 0.0


def test_teacher_student_floor_matches_monte_carlo() -> None:
    task = teacher_student()
    assert 0.3 < task.loss_floor < math.log(task.n_classes) - 0.3, "logits neither saturated nor flat"
    x, y = task.batch(2**15, _gen(7))
    nll = -task.true_log_probs(x).gather(1, y[:, None]).squeeze(1)
    stderr = math.hypot(nll.std().item() / math.sqrt(len(nll)), task.loss_floor_stderr)
    assert abs(nll.mean().item() - task.loss_floor) < 3 * stderr
    assert 0 < task.loss_floor_stderr < 0.01


@pytest.mark.parametrize(
    "make", [lambda: teacher_student(input_dim=4, n_train=100), lambda: markov_language(**SMALL_MARKOV, n_train=100)]
)
def test_n_train_pool_restricts_distinct_examples(make) -> None:
    def distinct_examples(task: Task, seeds: range) -> torch.Tensor:
        batches = [task.batch(256, _gen(seed)) for seed in seeds]
        rows = [torch.cat([x.reshape(256, -1).double(), y.reshape(256, -1).double()], 1) for x, y in batches]
        return torch.unique(torch.cat(rows), dim=0)

    seen = distinct_examples(make(), range(8))
    assert len(seen) == 100
    assert torch.equal(seen, distinct_examples(make(), range(100, 108))), "the pool comes from the task seed alone"


def test_n_train_pool_is_distinct_or_refused() -> None:
    tiny = dict(vocab=4, seq_len=3, branching=2)
    x, y = markov_language(**tiny, n_train=20)._pool
    assert len(torch.unique(torch.cat([x, y[:, -1:]], 1), dim=0)) == 20
    with pytest.raises(ValueError, match="too few distinct examples"):
        markov_language(**tiny, n_train=1000)


def test_token_file_round_trip(token_path: Path) -> None:
    task = token_file(token_path, seq_len=16)
    assert task.vocab == 50 and task.n_tokens == 1000 and task.loss_floor is None and task.loss_floor_stderr is None
    x, y = task.batch(64, _gen(0))
    assert bool(((x[:, 1:] - x[:, :-1]) % 50 == 7).all()), "windows are contiguous slices of the file"
    assert token_file(token_path, seq_len=16, vocab=64).n_outputs == 64
    wide = token_path.with_name("wide.bin")
    np.arange(70000, 70100, dtype=np.uint32).tofile(wide)
    x, _ = token_file(wide, seq_len=4, dtype="uint32").batch(3, _gen(0))
    assert int(x.min()) >= 70000 and token_file(wide, seq_len=4, dtype="uint32").vocab == 70100
    config = task.config()
    assert config["n_tokens"] == 1000 and config["fingerprint"] and Path(config["path"]).is_absolute()


def test_token_file_errors(token_path: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="token file not found"):
        token_file(tmp_path / "missing.bin", seq_len=8)
    with pytest.raises(ValueError, match="fewer than seq_len"):
        token_file(token_path, seq_len=1000)
    with pytest.raises(ValueError, match="dtype must be one of"):
        token_file(token_path, seq_len=8, dtype="float32")
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"\x00" * 7)
    with pytest.raises(ValueError, match="not a whole number of uint16 tokens"):
        token_file(odd, seq_len=2)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: teacher_student(n_classes=1), "n_classes must be >= 2"),
        (lambda: teacher_student(temperature=0.0), "temperature must be > 0"),
        (lambda: teacher_student(n_train=0), "n_train must be >= 1"),
        (lambda: markov_language(branching=0), "branching must lie in"),
        (lambda: markov_language(concentration=-1.0), "concentration must be > 0"),
        (lambda: markov_language(vocab=4096, order=2), "vocab \\*\\* \\(order \\+ 1\\)"),
        (lambda: teacher_student().batch(0, _gen(0)), "batch_size must be >= 1"),
    ],
)
def test_bad_arguments_raise(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


@pytest.fixture
def two_part_text(tmp_path: Path) -> Path:
    """95 KB of 'a' then 5 KB of 'b': the held-out tail (heldout=0.05) is exactly the 'b's."""
    path = tmp_path / "corpus.txt"
    path.write_bytes(b"a" * 95_000 + b"b" * 5_000)
    return path


def test_text_files_trains_on_the_head_and_holds_out_the_tail_in_fixed_order(two_part_text: Path) -> None:
    task = text_files([two_part_text], seq_len=32, eval_windows=100)
    assert (task.input_dim, task.n_outputs, task.n_bytes) == (256, 256, 100_000)
    x, y = task.batch(512, _gen(0))
    assert set(x.unique().tolist()) == set(y.unique().tolist()) == {ord("a")}
    batches = task.evaluation_batches(batch_size=64)
    assert [len(bx) for bx, _ in batches] == [64, 36]
    assert all(set(bx.unique().tolist()) == {ord("b")} for bx, _ in batches)
    again = text_files([two_part_text], seq_len=32, eval_windows=100).evaluation_batches(batch_size=64)
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(batches, again))


def test_text_files_is_identified_by_its_content(two_part_text: Path) -> None:
    before = text_files([two_part_text]).config()
    two_part_text.write_bytes(b"a" * 95_000 + b"c" * 5_000)
    assert text_files([two_part_text]).config()["fingerprint"] != before["fingerprint"]
    default = text_files()
    assert default.config()["paths"] == [] and len(default.config()["fingerprint"]) == 32
    assert default.n_bytes > 400_000  # the Python documentation's prose


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(paths=["no/such/file.txt"]), "text file not found: .*file.txt"),
    (dict(heldout=1.0), r"heldout must be a fraction in \(0, 1\), got 1.0"),
    (dict(seq_len=0), "seq_len must be >= 1"),
    (dict(eval_windows=0), "eval_windows must be >= 1"),
    (dict(seq_len=6000), "too few for windows of seq_len"),
])
def test_text_files_bad_arguments_are_one_line_errors(kwargs: dict, message: str, two_part_text: Path) -> None:
    kwargs.setdefault("paths", [two_part_text])
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        text_files(**kwargs)
