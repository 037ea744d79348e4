"""Training data: synthetic tasks with a known loss floor, text, and user token files. Nothing is downloaded.

A task is deterministic given its seed; the ``generator`` passed to :meth:`Task.batch`
controls which examples a run sees. With ``n_train`` set, a fixed pool of that many
distinct examples is drawn once from the task seed and batches sample from the pool
(for data-scaling studies).
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import math
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph
import torch
from torch import Tensor

__all__ = [
    "MarkovLanguage",
    "Task",
    "TeacherStudent",
    "TextFiles",
    "TokenFile",
    "markov_language",
    "teacher_student",
    "text_files",
    "token_file",
]

_FLOOR_SAMPLES = 2**16
"""Inputs in the fixed sample that estimates the teacher-student loss floor."""
_TEACHER_LOGIT_STD = 2.0
"""Mean per-input standard deviation of the teacher's logits (before the temperature)."""
_POOL_ROUNDS = 20
"""Redraws allowed while filling an ``n_train`` pool with distinct examples."""
_MAX_TABLE = 2**24
"""Largest Markov transition table, in entries ``vocab ** (order + 1)``."""
_POWER_ITERATIONS = 5000
"""Power-iteration steps allowed for a Markov chain's stationary distribution."""
_DENSE_SOLVE = 4096
"""Most recurrent contexts solved directly when power iteration has not converged."""
_TOKEN_DTYPES = ("uint8", "uint16", "uint32", "int32", "int64")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _seed(seed: int, stream: str) -> int:
    """The seed of one named random stream (teacher, floor, pool, ...) of a task seed."""
    digest = hashlib.blake2b(f"{seed}/{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _generator(seed: int, stream: str) -> torch.Generator:
    return torch.Generator().manual_seed(_seed(seed, stream))


def _entropy(log_p: Tensor) -> Tensor:
    """Entropy in nats over the last axis of log-probabilities (0·log 0 = 0)."""
    return -(log_p.exp() * log_p.nan_to_num(neginf=0.0)).sum(-1)


def _first_occurrences(rows: Tensor) -> Tensor:
    """Indices of the first occurrence of each distinct row, in their original order."""
    _, inverse = torch.unique(rows, dim=0, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), len(rows), dtype=torch.long)
    return first.scatter_reduce_(0, inverse, torch.arange(len(rows)), "amin").sort().values


class Task(abc.ABC):
    """A source of training batches with, where known, the loss floor of the Bayes-optimal predictor.

    Attributes: ``name``; ``input_kind`` (``"features"``: float32 x [B, input_dim] and int64
    y [B]; ``"tokens"``: int64 x [B, T] and next-token targets y [B, T]); ``input_dim``
    (feature dim or vocab size); ``n_outputs`` (logit dim); ``seq_len`` (None for feature
    tasks); ``loss_floor`` (irreducible cross-entropy in nats per prediction, None when
    unknown) and ``loss_floor_stderr`` (0 when exact). Concrete tasks are frozen dataclasses
    whose init fields are their configuration.
    """

    kind: ClassVar[str]
    input_kind: ClassVar[str]
    input_dim: int
    n_outputs: int
    seq_len: int | None
    loss_floor: float | None
    loss_floor_stderr: float | None
    _pool: tuple[Tensor, Tensor] | None = None

    @abc.abstractmethod
    def _sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``n`` fresh examples drawn with ``generator``."""

    def batch(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """A batch of CPU tensors (see the class docstring), from the pool if ``n_train`` is set."""
        _check(batch_size >= 1, f"batch_size must be >= 1, got {batch_size}")
        if self._pool is None:
            return self._sample(batch_size, generator)
        x, y = self._pool
        index = torch.randint(len(x), (batch_size,), generator=generator)
        return x[index], y[index]

    def config(self) -> dict[str, Any]:
        """JSON-able full description (cache keys, reports)."""
        return {"task": self.kind, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}}

    @property
    def name(self) -> str:
        """The constructor call with its non-default arguments, e.g. ``markov_language(vocab=256)``."""
        args = [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if f.init and (f.default is dataclasses.MISSING or getattr(self, f.name) != f.default)
        ]
        return f"{self.kind}({', '.join(args)})"

    def _fix_pool(self, n_train: int | None, seed: int) -> None:
        """Draw the ``n_train`` pool of distinct examples from the task seed (no pool if None)."""
        if n_train is None:
            return
        _check(n_train >= 1, f"n_train must be >= 1 or None, got {n_train}")
        generator = _generator(seed, "pool")
        x, y = self._sample(n_train, generator)
        for _ in range(_POOL_ROUNDS):
            keep = _first_occurrences(torch.cat([x.reshape(len(x), -1).double(), y.reshape(len(y), -1).double()], 1))
            x, y = x[keep], y[keep]
            if len(x) >= n_train:
                object.__setattr__(self, "_pool", (x[:n_train], y[:n_train]))
                return
            more_x, more_y = self._sample(2 * (n_train - len(x)), generator)
            x, y = torch.cat([x, more_x]), torch.cat([y, more_y])
        raise ValueError(f"{self.name} has too few distinct examples for n_train={n_train}")


@dataclass(frozen=True)
class TeacherStudent(Task):
    """Gaussian inputs labelled by a fixed random MLP teacher: ``y ~ Categorical(softmax(teacher(x)/T))``.

    The teacher has ``teacher_depth`` tanh hidden layers of ``teacher_width`` units, weights
    N(0, 1/fan_in) from the task seed, and a readout scaled so its logits spread by about 2 per
    input. ``loss_floor`` = E_x[H(softmax(teacher(x)/T))] is an estimate over 2^16 inputs from a
    fixed generator, with standard error ``loss_floor_stderr``.
    """

    input_dim: int = 32
    n_classes: int = 10
    teacher_width: int = 64
    teacher_depth: int = 2
    temperature: float = 1.0
    seed: int = 0
    n_train: int | None = None

    kind: ClassVar[str] = "teacher_student"
    input_kind: ClassVar[str] = "features"
    seq_len: ClassVar[None] = None
    weights: tuple[Tensor, ...] = field(init=False, repr=False, compare=False)
    loss_floor: float = field(init=False, compare=False)
    loss_floor_stderr: float = field(init=False, compare=False)

    def __post_init__(self) -> None:
        _check(self.input_dim >= 1, f"input_dim must be >= 1, got {self.input_dim}")
        _check(self.n_classes >= 2, f"n_classes must be >= 2, got {self.n_classes}")
        _check(self.teacher_width >= 1, f"teacher_width must be >= 1, got {self.teacher_width}")
        _check(self.teacher_depth >= 0, f"teacher_depth must be >= 0, got {self.teacher_depth}")
        _check(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")
        generator = _generator(self.seed, "teacher")
        dims = [self.input_dim] + [self.teacher_width] * self.teacher_depth + [self.n_classes]
        weights = tuple(
            torch.randn(d_out, d_in, generator=generator, dtype=torch.float64) / math.sqrt(d_in)
            for d_in, d_out in zip(dims, dims[1:])
        )
        object.__setattr__(self, "weights", weights)
        probe = torch.randn(4096, self.input_dim, generator=_generator(self.seed, "scale"))
        weights[-1].mul_(_TEACHER_LOGIT_STD / self._logits(probe).std(dim=1).mean())
        x = torch.randn(_FLOOR_SAMPLES, self.input_dim, generator=_generator(self.seed, "floor"))
        entropy = _entropy(self.true_log_probs(x))
        object.__setattr__(self, "loss_floor", entropy.mean().item())
        object.__setattr__(self, "loss_floor_stderr", entropy.std().item() / math.sqrt(_FLOOR_SAMPLES))
        self._fix_pool(self.n_train, self.seed)

    @property
    def n_outputs(self) -> int:
        return self.n_classes

    def _logits(self, x: Tensor) -> Tensor:
        h = x.double()
        for w in self.weights[:-1]:
            h = torch.tanh(h @ w.T)
        return h @ self.weights[-1].T

    def true_log_probs(self, x: Tensor) -> Tensor:
        """The Bayes-optimal log p(y | x), float64 [B, n_classes]."""
        return torch.log_softmax(self._logits(x) / self.temperature, dim=-1)

    def _sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        x = torch.randn(n, self.input_dim, generator=generator)
        y = torch.multinomial(self.true_log_probs(x).exp(), 1, generator=generator).squeeze(1)
        return x, y


@dataclass(frozen=True)
class MarkovLanguage(Task):
    """Token sequences from a random sparse Markov chain of order ``order`` over ``vocab`` tokens.

    Each context (the previous ``order`` tokens) allows ``branching`` next tokens with
    Dirichlet(``concentration``) weights. One of them is always the last token's successor on
    a fixed random cycle through the vocabulary, so every context leads to one closed class of
    contexts: the stationary distribution is unique and every token occurs. Sequences of
    ``seq_len + 1`` tokens start from the stationary distribution over contexts; x = seq[:-1],
    y = seq[1:]. ``loss_floor`` is exact: the mean over target positions of the Bayes-optimal
    conditional entropy given the whole prefix, which is ``entropy_rate`` once the prefix holds
    ``order`` tokens, and for the first ``order - 1`` targets a difference of entropies of the
    stationary distribution's marginals. Tables must fit ``vocab ** (order + 1) <= 2**24``.
    """

    vocab: int = 64
    seq_len: int = 32
    order: int = 1
    branching: int = 4
    concentration: float = 1.0
    seed: int = 0
    n_train: int | None = None

    kind: ClassVar[str] = "markov_language"
    input_kind: ClassVar[str] = "tokens"
    loss_floor_stderr: ClassVar[float] = 0.0
    successors: Tensor = field(init=False, repr=False, compare=False)
    """[vocab**order, branching] int64: the allowed next tokens of each context."""
    probs: Tensor = field(init=False, repr=False, compare=False)
    """[vocab**order, branching] float64: their probabilities."""
    stationary: Tensor = field(init=False, repr=False, compare=False)
    """[vocab**order] float64: the stationary distribution over contexts (ids in base ``vocab``)."""
    entropy_rate: float = field(init=False, compare=False)
    loss_floor: float = field(init=False, compare=False)

    def __post_init__(self) -> None:
        _check(self.vocab >= 2, f"vocab must be >= 2, got {self.vocab}")
        _check(self.order >= 1, f"order must be >= 1, got {self.order}")
        _check(self.seq_len >= max(1, self.order - 1), f"seq_len must be >= max(1, order - 1), got {self.seq_len}")
        _check(1 <= self.branching <= self.vocab, f"branching must lie in [1, vocab], got {self.branching}")
        _check(self.concentration > 0, f"concentration must be > 0, got {self.concentration}")
        table = f"{self.vocab}**{self.order + 1}"
        _check(self.vocab ** (self.order + 1) <= _MAX_TABLE, f"vocab ** (order + 1) must be <= 2**24, got {table}")
        successors, probs, start = _random_chain(self.vocab, self.order, self.branching, self.concentration, self.seed)
        stationary = _stationary(successors, probs, self.vocab, start)
        row_entropy = -(probs * np.log(probs)).sum(1)
        entropy_rate = float(stationary @ row_entropy)
        joint = [_entropy_of(stationary.reshape(self.vocab**m, -1).sum(1)) for m in range(1, self.order + 1)]
        conditional = [joint[j + 1] - joint[j] for j in range(self.order - 1)]
        per_target = conditional + [entropy_rate] * (self.seq_len - len(conditional))
        object.__setattr__(self, "successors", torch.from_numpy(successors))
        object.__setattr__(self, "probs", torch.from_numpy(probs))
        object.__setattr__(self, "stationary", torch.from_numpy(stationary))
        object.__setattr__(self, "entropy_rate", entropy_rate)
        object.__setattr__(self, "loss_floor", sum(per_target) / self.seq_len)
        self._fix_pool(self.n_train, self.seed)

    @property
    def input_dim(self) -> int:
        return self.vocab

    @property
    def n_outputs(self) -> int:
        return self.vocab

    def _context_ids(self, tokens: Tensor) -> Tensor:
        """Ids of the token tuples along the last axis, read as numbers in base ``vocab``."""
        powers = self.vocab ** torch.arange(tokens.shape[-1] - 1, -1, -1)
        return (tokens * powers).sum(-1)

    def true_log_probs(self, x: Tensor) -> Tensor:
        """The Bayes-optimal log p(next token | prefix) at every position of x, float64 [B, T, vocab]."""
        out = torch.full((*x.shape, self.vocab), -math.inf, dtype=torch.float64)
        k = self.order
        for j in range(min(k - 1, x.shape[1])):  # prefixes shorter than a context: stationary marginals
            joint = self.stationary.reshape(self.vocab ** (j + 2), -1).sum(1).reshape(-1, self.vocab)
            rows = joint[self._context_ids(x[:, : j + 1])]
            out[:, j] = (rows / rows.sum(1, keepdim=True)).log()
        if x.shape[1] >= k:
            ctx = self._context_ids(x.unfold(1, k, 1))
            out[:, k - 1 :].scatter_(2, self.successors[ctx], self.probs[ctx].log())
        return out

    def _sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        k, n_contexts = self.order, len(self.stationary)
        ctx = torch.multinomial(self.stationary, n, replacement=True, generator=generator)
        seq = torch.empty(n, self.seq_len + 1, dtype=torch.long)
        seq[:, :k] = ctx[:, None] // self.vocab ** torch.arange(k - 1, -1, -1) % self.vocab
        for t in range(k, self.seq_len + 1):
            choice = torch.multinomial(self.probs[ctx], 1, generator=generator).squeeze(1)
            token = self.successors[ctx, choice]
            seq[:, t] = token
            ctx = (ctx * self.vocab + token) % n_contexts
        return seq[:, :-1].contiguous(), seq[:, 1:].contiguous()


def _random_chain(
    vocab: int, order: int, branching: int, concentration: float, seed: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Successor table, probabilities, and one context on the embedded cycle (see MarkovLanguage)."""
    rng = np.random.default_rng(_seed(seed, "chain"))
    n_contexts = vocab**order
    order_on_cycle = rng.permutation(vocab)
    cycle = np.empty(vocab, dtype=np.int64)
    cycle[order_on_cycle] = np.roll(order_on_cycle, -1)
    keys = rng.random((n_contexts, vocab), dtype=np.float32)
    keys[np.arange(n_contexts), cycle[np.arange(n_contexts) % vocab]] = -1.0
    successors = np.sort(np.argpartition(keys, branching - 1, axis=1)[:, :branching], axis=1)
    weights = np.maximum(rng.standard_gamma(concentration, size=(n_contexts, branching)), np.finfo(float).tiny)
    start, token = 0, 0
    for _ in range(order):
        token = cycle[token]
        start = start * vocab + token
    return successors, weights / weights.sum(1, keepdims=True), start


def _stationary(successors: np.ndarray, probs: np.ndarray, vocab: int, start: int) -> np.ndarray:
    """The stationary distribution over contexts, supported on the closed class containing ``start``.

    Power iteration on the lazy chain (P + I)/2 (same stationary distribution, aperiodic) to an
    L1 change below 1e-15; a chain that mixes too slowly for that is solved directly if small.
    """
    n_contexts, branching = successors.shape
    following = (np.arange(n_contexts)[:, None] * vocab + successors) % n_contexts
    rows = np.repeat(np.arange(n_contexts), branching)
    transition = scipy.sparse.csr_matrix((probs.ravel(), (rows, following.ravel())), shape=(n_contexts, n_contexts))
    closed = np.sort(scipy.sparse.csgraph.breadth_first_order(transition, start, return_predecessors=False))
    backward = transition[closed][:, closed].T.tocsr()
    pi = np.full(len(closed), 1.0 / len(closed))
    for _ in range(_POWER_ITERATIONS):
        lazy = 0.5 * (pi + backward @ pi)
        change, pi = np.abs(lazy - pi).sum(), lazy
        if change < 1e-15:
            break
    else:
        message = f"Markov chain with {len(closed)} recurrent contexts mixes too slowly; raise branching/concentration"
        _check(len(closed) <= _DENSE_SOLVE, message)
        system = backward.toarray() - np.eye(len(closed))
        system[0] = 1.0  # one balance equation is redundant: replace it by the normalisation
        pi = np.linalg.solve(system, np.eye(len(closed))[0])
    stationary = np.zeros(n_contexts)
    stationary[closed] = np.clip(pi, 0.0, None)
    return stationary / stationary.sum()


def _entropy_of(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


@dataclass(frozen=True)
class TokenFile(Task):
    """Random windows of a user's flat token file (nanoGPT-style ``.bin``), read through ``numpy.memmap``.

    ``vocab`` defaults to the largest token + 1 (one pass over the file). The loss floor is
    unknown. The config carries the token count and a fingerprint of the file's size, first
    and last MiB, so cached results follow the file's content.
    """

    path: str
    seq_len: int
    dtype: str = "uint16"
    vocab: int | None = None

    kind: ClassVar[str] = "token_file"
    input_kind: ClassVar[str] = "tokens"
    loss_floor: ClassVar[None] = None
    loss_floor_stderr: ClassVar[None] = None
    n_tokens: int = field(init=False, compare=False)
    fingerprint: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        path = os.path.abspath(os.fspath(self.path))
        _check(self.dtype in _TOKEN_DTYPES, f"dtype must be one of {', '.join(_TOKEN_DTYPES)}, got {self.dtype!r}")
        _check(self.seq_len >= 1, f"seq_len must be >= 1, got {self.seq_len}")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"token file not found: {path}")
        size, itemsize = os.path.getsize(path), np.dtype(self.dtype).itemsize
        _check(size % itemsize == 0, f"{path}: {size} bytes is not a whole number of {self.dtype} tokens")
        n_tokens = size // itemsize
        _check(n_tokens >= self.seq_len + 1, f"{path}: {n_tokens} tokens, fewer than seq_len + 1 = {self.seq_len + 1}")
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "n_tokens", n_tokens)
        object.__setattr__(self, "fingerprint", _fingerprint(path, size))
        if self.vocab is None:
            object.__setattr__(self, "vocab", int(self._tokens().max()) + 1)
        _check(self.vocab >= 1, f"vocab must be >= 1, got {self.vocab}")

    @property
    def input_dim(self) -> int:
        return self.vocab

    @property
    def n_outputs(self) -> int:
        return self.vocab

    def config(self) -> dict[str, Any]:
        return {**super().config(), "n_tokens": self.n_tokens, "fingerprint": self.fingerprint}

    def _tokens(self) -> np.memmap:
        return np.memmap(self.path, dtype=self.dtype, mode="r")

    def _sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        starts = torch.randint(self.n_tokens - self.seq_len, (n, 1), generator=generator).numpy()
        windows = torch.from_numpy(self._tokens()[starts + np.arange(self.seq_len + 1)].astype(np.int64))
        return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()


@dataclass(frozen=True)
class TextFiles(Task):
    """Byte-level language modelling (vocab 256) on text: the files in ``paths``, concatenated, or by default the prose
    of the Python documentation every Python ships with (``pydoc_data.topics``, about 0.5 MB of English).

    The last ``heldout`` fraction of the bytes is never trained on: ``evaluation_batches`` reads ``eval_windows``
    windows evenly spaced over it, the same in every run, and a run's final loss is its loss there. The config carries
    a hash of the whole corpus, so another Python's documentation or an edited file is another task, never a cache hit.
    """

    paths: tuple[str, ...] = ()
    seq_len: int = 64
    heldout: float = 0.05
    eval_windows: int = 256

    kind: ClassVar[str] = "text_files"
    input_kind: ClassVar[str] = "tokens"
    input_dim: ClassVar[int] = 256
    n_outputs: ClassVar[int] = 256
    loss_floor: ClassVar[None] = None
    loss_floor_stderr: ClassVar[None] = None
    n_bytes: int = field(init=False, compare=False)
    fingerprint: str = field(init=False, compare=False)
    _bytes: np.ndarray = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        _check(self.seq_len >= 1, f"seq_len must be >= 1, got {self.seq_len}")
        _check(0 < self.heldout < 1, f"heldout must be a fraction in (0, 1), got {self.heldout}")
        _check(self.eval_windows >= 1, f"eval_windows must be >= 1, got {self.eval_windows}")
        paths = (self.paths,) if isinstance(self.paths, (str, os.PathLike)) else tuple(self.paths)
        object.__setattr__(self, "paths", tuple(os.fspath(p) for p in paths))
        corpus = np.frombuffer(_read_corpus(self.paths), dtype=np.uint8)
        object.__setattr__(self, "_bytes", corpus)
        object.__setattr__(self, "n_bytes", int(corpus.size))
        object.__setattr__(self, "fingerprint", hashlib.blake2b(corpus.tobytes(), digest_size=16).hexdigest())
        where = ", ".join(self.paths) or "the Python documentation"
        _check(self._train_end >= self.seq_len + 1 and self.n_bytes - self._train_end >= self.seq_len + 1,
               f"{where}: {self.n_bytes} bytes leave too few for windows of seq_len + 1 = {self.seq_len + 1} bytes in "
               f"both the training part and the held-out {self.heldout:g}")

    @property
    def _train_end(self) -> int:
        return int(self.n_bytes * (1 - self.heldout))

    def config(self) -> dict[str, Any]:
        return {**super().config(), "paths": list(self.paths), "n_bytes": self.n_bytes, "fingerprint": self.fingerprint}

    def _windows(self, starts: np.ndarray) -> tuple[Tensor, Tensor]:
        windows = torch.from_numpy(self._bytes[starts[:, None] + np.arange(self.seq_len + 1)].astype(np.int64))
        return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()

    def _sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        starts = torch.randint(self._train_end - self.seq_len, (n,), generator=generator).numpy()
        return self._windows(starts)

    def evaluation_batches(self, batch_size: int = 64) -> list[tuple[Tensor, Tensor]]:
        """The held-out windows ``(x, y)``, in fixed order, in batches of at most ``batch_size``."""
        last = self.n_bytes - self.seq_len - 1
        starts = np.linspace(self._train_end, last, self.eval_windows).round().astype(np.int64)
        return [self._windows(starts[i:i + batch_size]) for i in range(0, len(starts), batch_size)]


def _read_corpus(paths: tuple[str, ...]) -> bytes:
    """The files' bytes, concatenated in order (a newline between files), or the Python documentation's prose."""
    if not paths:
        try:
            from pydoc_data.topics import topics
        except ImportError:
            raise ValueError("text_files() without paths reads the Python documentation (pydoc_data), which this "
                             "Python lacks: pass paths=[...] to text files") from None
        return "\n\n".join(topics[key] for key in sorted(topics)).encode("utf-8")
    parts = []
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"text file not found: {os.path.abspath(path)}")
        with open(path, "rb") as f:
            parts.append(f.read())
    return b"\n".join(parts)


def _fingerprint(path: str, size: int, chunk: int = 2**20) -> str:
    """A cheap content fingerprint: hash of the size and the first and last ``chunk`` bytes."""
    digest = hashlib.blake2b(str(size).encode(), digest_size=16)
    with open(path, "rb") as f:
        digest.update(f.read(chunk))
        f.seek(max(0, size - chunk))
        digest.update(f.read(chunk))
    return digest.hexdigest()


teacher_student = TeacherStudent
markov_language = MarkovLanguage
text_files = TextFiles
token_file = TokenFile
