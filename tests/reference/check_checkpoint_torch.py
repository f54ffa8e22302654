"""Loads libsmp checkpoints into PyTorch (the interop check of docs/checkpoints.md; run by
hand with Debian's python3-torch, not by CI):

    /usr/bin/python3 tests/reference/check_checkpoint_torch.py gpt CKPT_DIR \
        --vocab 256 --block 32 --layers 2 --heads 2 --embd 32
    /usr/bin/python3 tests/reference/check_checkpoint_torch.py mnist CKPT_DIR

tools/smp_checkpoint_to_torch.py converts the newest checkpoint; the model loads into
nanoGPT's GPT (gen_gpt.py) or the MNIST example's network with load_state_dict(strict=True),
the optimizer state into torch.optim.AdamW / Adadelta with load_state_dict, and one more
optimizer step runs.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model", choices=["gpt", "mnist"])
    p.add_argument("ckpt")
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument("--block", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--embd", type=int, default=128)
    a = p.parse_args()
    tmp = tempfile.mkdtemp()
    mfile, ofile = os.path.join(tmp, "model.pt"), os.path.join(tmp, "optimizer.pt")
    subprocess.run([sys.executable, os.path.join(here, "..", "..", "tools",
                                                 "smp_checkpoint_to_torch.py"), a.ckpt,
                    "--model", mfile, "--optimizer", ofile], check=True)
    sd = torch.load(mfile)
    if a.model == "gpt":
        from gen_gpt import GPT
        net = GPT(a.vocab, a.block, a.layers, a.heads, a.embd)
        net.load_state_dict(sd, strict=True)
        opt = torch.optim.AdamW(net.parameters())
        x = torch.randint(0, a.vocab, (2, 8))
        loss = net(x, x)[1]
    else:
        from golden_common import MnistNet
        net = MnistNet()
        net.load_state_dict(sd, strict=True)
        opt = torch.optim.Adadelta(net.parameters())
        loss = net(torch.randn(2, 1, 28, 28)).sum()
    opt.load_state_dict(torch.load(ofile))
    loss.backward()
    opt.step()
    print(f"{a.model}: {len(sd)} tensors loaded with strict=True, optimizer state of "
          f"{len(opt.state_dict()['state'])} parameters loaded, one more step taken")


if __name__ == "__main__":
    main()
