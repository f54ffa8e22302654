"""Golden values for smp::nn::GPT (tests/nn/transformer_test.cpp; run with /usr/bin/python3).

The model below is nanoGPT's (karpathy/nanoGPT model.py: GPTConfig, LayerNorm with optional
bias, CausalSelfAttention, MLP, Block, GPT with lm_head tied to wte and its initialisation),
written out here with the explicit-softmax attention path, since PyTorch 1.13 has no
scaled_dot_product_attention; the causal mask is a non-persistent buffer, so the state_dict
has nanoGPT's keys. Config: vocab 32, block 8, n_layer 2, n_head 2, n_embd 16, bias True,
dropout 0.

tests/golden/gpt.safetensors holds, for torch.manual_seed(0) and the model built after it:
  init.<key>   the initial state_dict (both tied keys, as PyTorch lists them)
  idx, targets a (3, 8) int64 batch; targets[1, 5] = -1 (ignored by the loss)
  logits       model(idx) logits (3, 8, 32)
  loss         the mean cross-entropy of model(idx, targets)
  grad.<name>  every parameter's gradient of that loss (named_parameters: the tied weight once)
  adamw.<key>  the state_dict after one torch.optim.AdamW step on those gradients with
               lr 1e-3, betas (0.9, 0.95), eps 1e-8, weight_decay 0.1 (one group, every
               parameter)
"""
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden_common import save, seeded  # noqa: E402

VOCAB, BLOCK, N_LAYER, N_HEAD, N_EMBD = 32, 8, 2, 2, 16
LR, BETAS, EPS, WEIGHT_DECAY = 1e-3, (0.9, 0.95), 1e-8, 0.1


class LayerNorm(nn.Module):
    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head, block_size, bias, dropout):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.attn_dropout = nn.Dropout(dropout)
        self.resid_dropout = nn.Dropout(dropout)
        self.n_head, self.n_embd = n_head, n_embd
        mask = torch.tril(torch.ones(block_size, block_size)).view(1, 1, block_size, block_size)
        self.register_buffer("bias", mask, persistent=False)

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
        att = F.softmax(att, dim=-1)
        att = self.attn_dropout(att)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, n_embd, bias, dropout):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, n_embd, n_head, block_size, bias, dropout):
        super().__init__()
        self.ln_1 = LayerNorm(n_embd, bias)
        self.attn = CausalSelfAttention(n_embd, n_head, block_size, bias, dropout)
        self.ln_2 = LayerNorm(n_embd, bias)
        self.mlp = MLP(n_embd, bias, dropout)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocab, block, n_layer, n_head, n_embd, bias=True, dropout=0.0):
        super().__init__()
        self.block_size = block
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab, n_embd),
            wpe=nn.Embedding(block, n_embd),
            drop=nn.Dropout(dropout),
            h=nn.ModuleList([Block(n_embd, n_head, block, bias, dropout) for _ in range(n_layer)]),
            ln_f=LayerNorm(n_embd, bias),
        ))
        self.lm_head = nn.Linear(n_embd, vocab, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        self.apply(self._init_weights)
        for pn, p in self.named_parameters():
            if pn.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets=None):
        b, t = idx.size()
        assert t <= self.block_size
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x)
        if targets is None:
            return logits
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1),
                                       ignore_index=-1)


def main():
    seeded(0)
    model = GPT(VOCAB, BLOCK, N_LAYER, N_HEAD, N_EMBD)
    out = {f"init.{k}": v.clone() for k, v in model.state_dict().items()}
    idx = torch.randint(0, VOCAB, (3, BLOCK))
    targets = torch.randint(0, VOCAB, (3, BLOCK))
    targets[1, 5] = -1
    out["idx"], out["targets"] = idx, targets
    with torch.no_grad():
        out["logits"] = model(idx)
    _, loss = model(idx, targets)
    out["loss"] = loss.detach()
    loss.backward()
    for name, p in model.named_parameters():
        out[f"grad.{name}"] = p.grad.clone()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=BETAS, eps=EPS,
                            weight_decay=WEIGHT_DECAY)
    opt.step()
    for k, v in model.state_dict().items():
        out[f"adamw.{k}"] = v.clone()
    save("gpt", out, {"config": f"vocab {VOCAB} block {BLOCK} n_layer {N_LAYER} n_head {N_HEAD} "
                                f"n_embd {N_EMBD} bias True dropout 0",
                      "adamw": f"lr {LR} betas {BETAS} eps {EPS} weight_decay {WEIGHT_DECAY}"})


if __name__ == "__main__":
    main()
