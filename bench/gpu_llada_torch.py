"""PyTorch's side of bench/gpu-check.sh, on the same GPU in the same call: the measured bf16
tensor-core peak, the GEMMs of the CUDA harness's table, and threshold decoding of a randomly
initialised LLaDA-8B-shaped model (bf16, no cache, logits of the current block only, as diffpo).
Prints Markdown tables. Usage: python3 bench/gpu_llada_torch.py [--gen 256]
"""
import argparse
import math
import time

import torch
import torch.nn.functional as F


def timed(fn, reps):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def gemms():
    print("\n## PyTorch on the same GPU: bf16 GEMMs (torch.matmul, median of 10)\n")
    print("| kernel | shape (M x N x K) | ms | TFLOP/s |\n|---|---|---|---|")
    shapes = [("peak: square", 8192, 8192, 8192), ("q|k|v projection", 4096, 3 * 4096, 4096), ("attn_out", 4096, 4096, 4096),
              ("ff_proj|up_proj", 4096, 2 * 12288, 4096), ("ff_out", 4096, 4096, 12288)]
    for name, m, n, k in shapes:
        a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
        s = timed(lambda: a @ w.t(), 10)
        print(f"| torch bf16 {name} | {m} x {n} x {k} | {s * 1e3:.3f} | {2 * m * n * k / s / 1e12:.1f} |")


def attend(q, k, v):  # bidirectional attention; PyTorch < 2.0 has no fused kernel
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v)
    return ((q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])).softmax(-1) @ v


def rmsnorm(x, eps=1e-5):
    return (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


class Llada:
    """LLaDA-8B's shapes: D 4096, 32 layers, 32 heads, SwiGLU 12288, vocabulary 126464, RoPE theta 5e5."""

    def __init__(self, D=4096, L=32, H=32, F=12288, V=126464):
        self.D, self.H = D, H
        mk = lambda *s: torch.randn(*s, device="cuda", dtype=torch.bfloat16) * 0.02
        self.wte = mk(V, D)
        self.layers = [dict(qkv=mk(3 * D, D), out=mk(D, D), up=mk(2 * F, D), down=mk(D, F)) for _ in range(L)]
        self.head = mk(V, D)
        hd = D // H
        inv = 1.0 / (500000.0 ** (torch.arange(0, hd, 2, device="cuda").float() / hd))
        ang = torch.arange(4096, device="cuda").float()[:, None] * inv[None]
        self.cos, self.sin = ang.cos().to(torch.bfloat16), ang.sin().to(torch.bfloat16)

    def rope(self, x):  # x (B, H, T, hd), rotate-half
        T, half = x.shape[2], x.shape[3] // 2
        c, s = self.cos[:T], self.sin[:T]
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)

    def __call__(self, ids, rows):
        B, T = ids.shape
        x = self.wte[ids]
        for l in self.layers:
            q, k, v = (rmsnorm(x) @ l["qkv"].t()).view(B, T, 3, self.H, -1).permute(2, 0, 3, 1, 4)
            a = attend(self.rope(q), self.rope(k), v)
            x = x + a.transpose(1, 2).reshape(B, T, self.D) @ l["out"].t()
            g, u = (rmsnorm(x) @ l["up"].t()).chunk(2, dim=-1)
            x = x + (F.silu(g) * u) @ l["down"].t()
        return rmsnorm(x)[:, rows] @ self.head.t()


@torch.no_grad()
def decode(gen):
    model = Llada()
    mask_id, P, block, tau = 126336, 64, 32, 0.9
    ids = torch.full((1, P + gen), mask_id, device="cuda", dtype=torch.long)
    ids[0, :P] = torch.arange(1000, 1000 + P)
    model(ids, torch.arange(P, P + block, device="cuda"))  # warm-up
    nfe = 0
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for b0 in range(P, P + gen, block):
        while (ids[0, b0:b0 + block] == mask_id).any():
            logits = model(ids, torch.arange(b0, b0 + block, device="cuda")).float()
            logits[..., mask_id] = -math.inf
            conf, x0 = logits.softmax(-1).max(-1)
            masked = ids[0, b0:b0 + block] == mask_id
            conf = torch.where(masked, conf[0], torch.tensor(-1.0, device="cuda"))
            take = (conf >= tau) & masked
            take[conf.argmax()] = True
            ids[0, b0:b0 + block] = torch.where(take, x0[0], ids[0, b0:b0 + block])
            nfe += 1
    torch.cuda.synchronize()
    s = time.perf_counter() - t0
    print("\n## PyTorch threshold decoding (0.9), random LLaDA-8B-shaped model, bf16, no cache\n")
    print("| batch | prompt + generated (block) | NFE | ms / NFE | tokens/s |\n|---|---|---|---|---|")
    print(f"| 1 | {P} + {gen} ({block}) | {nfe} | {s * 1e3 / nfe:.2f} | {gen / s:.1f} |")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--gen", type=int, default=256)
    args = ap.parse_args()
    print(f"\n# PyTorch {torch.__version__} on {torch.cuda.get_device_name()}")
    gemms()
    decode(args.gen)
