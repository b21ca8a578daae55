"""`byte-gpt`: a small byte-level GPT (decoder-only transformer) trained on text.

Tokens are bytes (0-255) plus one padding token (256), so any UTF-8 text works
without a tokenizer file. A sample (a `text` line, or a JSONL record's `text`
field) becomes one training row: its first `context + 1` bytes, padded; the
model predicts each next byte, and padding counts for nothing. The held-out
loss is reported in bits per byte, and rank 0 writes `sample.txt`: text the
trained model generates from `prompt`, drawn with a generator seeded by the job.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from okai.errors import UsageError
from okai.formats import Sample
from okai.train.builtins import GPTHyperparameters
from okai.train.context import IGNORE, Context
from okai.train.seeding import derive_seed

PAD = 256
VOCAB = 257
SAMPLE_FILE = "sample.txt"


class Block(nn.Module):
    """Pre-norm transformer block: causal self-attention, then a 4x MLP."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.attention_norm = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.projection = nn.Linear(width, width)
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(self.attention_norm(x)).split(width, dim=2)
        shape = (batch, length, self.heads, width // self.heads)
        q, k, v = (t.view(shape).transpose(1, 2) for t in (q, k, v))
        attended = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )
        x = x + self.drop(self.projection(attended.transpose(1, 2).reshape(batch, length, width)))
        return x + self.drop(self.mlp(self.mlp_norm(x)))  # type: ignore[no-any-return]


class ByteGPT(nn.Module):
    """Token and position embeddings, `depth` blocks, a final norm and a 256-way head."""

    def __init__(self, width: int, depth: int, heads: int, context: int, dropout: float) -> None:
        super().__init__()
        self.context = context
        self.tokens = nn.Embedding(VOCAB, width)
        self.positions = nn.Embedding(context, width)
        self.blocks = nn.Sequential(*(Block(width, heads, dropout) for _ in range(depth)))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 256, bias=False)
        self.apply(_initialise)
        for name, parameter in self.named_parameters():  # GPT-2's residual scaling
            if name.endswith("projection.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(parameter, std=0.02 / math.sqrt(2 * depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(x.shape[1], device=x.device)
        hidden = self.tokens(x) + self.positions(positions)
        return self.head(self.norm(self.blocks(hidden)))  # type: ignore[no-any-return]


def _initialise(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def text_of(sample: Sample) -> str:
    """The text of a sample: a `text` line, or a JSONL record's `text` field."""
    text = sample.get("text")
    if not isinstance(text, str):
        raise UsageError(
            "byte-gpt trains on samples with a text field (text files, or JSONL records "
            f'with "text"); got a sample with fields {sorted(sample)[:8]}'
        )
    return text


class ByteBlocks:
    """The collate function: samples -> (bytes, next bytes), `context` long, padded."""

    def __init__(self, context: int) -> None:
        self.context = context

    def __call__(self, samples: list[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.full((len(samples), self.context + 1), PAD, dtype=torch.long)
        for row, sample in enumerate(samples):
            data = text_of(sample).encode("utf-8")[: self.context + 1]
            rows[row, : len(data)] = torch.tensor(list(data), dtype=torch.long)
        targets = rows[:, 1:].clone()
        targets[targets == PAD] = IGNORE
        return rows[:, :-1], targets


def next_byte_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the real (unpadded) next bytes, in nats per byte."""
    return F.cross_entropy(output.reshape(-1, output.shape[-1]), target.reshape(-1))


@torch.no_grad()
def generate(model: ByteGPT, prompt: bytes, length: int, *, temperature: float, seed: int) -> bytes:
    """`length` bytes after `prompt`, drawn with a generator seeded by `seed`."""
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    tokens = list(prompt) or [ord("\n")]
    for _ in range(length):
        window = torch.tensor([tokens[-model.context :]], dtype=torch.long, device=device)
        logits = model(window)[0, -1].float().cpu() / temperature
        tokens.append(int(torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)))
    model.train(was_training)
    return bytes(tokens)


def train(ctx: Context) -> nn.Module:
    """Train `ByteGPT` with AdamW on this rank's text samples; rank 0 writes `sample.txt`."""
    hp = GPTHyperparameters.model_validate(dict(ctx.hyperparameters))
    model = ByteGPT(hp.width, hp.depth, hp.heads, hp.context, hp.dropout)
    optimizer = torch.optim.AdamW(model.parameters(), lr=hp.lr, weight_decay=0.01)
    ctx.fit(
        model,
        optimizer,
        epochs=hp.epochs,
        batch_size=hp.batch_size,
        loss_fn=next_byte_loss,
        collate=ByteBlocks(hp.context),
        evaluate_every=hp.evaluate_every,
        bits_per_byte=True,
    )
    if ctx.is_main and hp.sample_bytes:
        text = generate(
            model,
            hp.prompt.encode("utf-8"),
            hp.sample_bytes,
            temperature=hp.temperature,
            seed=derive_seed(ctx.seed, "sample"),
        )
        (ctx.run_dir / SAMPLE_FILE).write_text(
            text.decode("utf-8", errors="replace"), encoding="utf-8"
        )
    return model
