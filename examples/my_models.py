"""A user's own GPT with hand-written muP, to run the reference suite on.

Nothing here comes from pytest_scaling's families: the model sets its own init, attention
scale and readout, and ``make_optimizer`` gives the per-layer Adam LRs (Tensor Programs V,
Table 3). Run the suite on it without editing a file:

    pytest scaling_tests/ --scaling-family examples.my_models:family

or override the ``model_family`` fixture in a conftest.py (see ``examples/conftest_example.py``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pytest_scaling import ModelFamily, tasks
from pytest_scaling.optim import AdamW

BASE_WIDTH = 64
VOCAB, SEQ_LEN, N_HEADS = 64, 32, 4


class Block(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.out = nn.Linear(width, width, bias=False)
        self.up = nn.Linear(width, 4 * width, bias=False)
        self.down = nn.Linear(4 * width, width, bias=False)
        self.head_dim = width // N_HEADS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, N_HEADS, self.head_dim).permute(2, 0, 3, 1, 4)
        mask = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
        scores = (q @ k.transpose(-2, -1) * (8.0 / self.head_dim)).masked_fill(mask, float("-inf"))  # muP: 1/d
        x = x + self.out((scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, c))
        return x + self.down(F.gelu(self.up(self.norm2(x))))


class MyGPT(nn.Module):
    def __init__(self, width: int, n_layers: int = 2):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, width)
        self.pos = nn.Parameter(torch.randn(SEQ_LEN, width))
        self.blocks = nn.ModuleList(Block(width) for _ in range(n_layers))
        self.norm = nn.LayerNorm(width)
        self.readout = nn.Linear(width, VOCAB, bias=False)
        for name, p in self.named_parameters():
            if p.dim() == 2 and name.startswith("blocks"):
                nn.init.normal_(p, std=1 / math.sqrt(p.shape[1]))  # hidden: variance 1/fan_in
        nn.init.normal_(self.embed.weight, std=1.0)
        nn.init.zeros_(self.readout.weight)  # muP allows a zero readout

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.pos[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.readout(self.norm(x))


def make_optimizer(model: MyGPT, lr: float) -> torch.optim.Optimizer:
    """Adam LR eta for embeddings and vectors, eta/m for hidden matrices and the readout."""
    m = model.readout.in_features / BASE_WIDTH
    scaled = [p for n, p in model.named_parameters() if p.dim() == 2 and n.startswith(("blocks", "readout"))]
    ids = {id(p) for p in scaled}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return AdamW([{"params": rest, "lr": lr}, {"params": scaled, "lr": lr / m}], lr=lr)


family = ModelFamily(
    name="my-gpt",
    build=MyGPT,
    task=tasks.markov_language(vocab=VOCAB, seq_len=SEQ_LEN),
    base_width=BASE_WIDTH,
    widths=(64, 128, 256),
    optimizer=make_optimizer,
)
