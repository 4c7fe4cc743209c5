"""The same LLaDA model in PyTorch (eager), timed in the same bench run as diffpo.

Reads a diffpo checkpoint (config.json + an F32 or BF16 model.safetensors) so that the logits can be
compared too; with --dtype bf16 the weights are held in BF16 and the forward runs under CPU autocast
(BF16 matrix products), as a BF16 LLaDA checkpoint runs in PyTorch. Prints one JSON line (versions, logits), then times one forward or training step per request
line read from stdin. Run with OMP_WAIT_POLICY=PASSIVE (see README: without it PyTorch is
2-4x slower on these machines, which would flatter diffpo).
"""
import argparse
import json
import math
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] in ("F32", "BF16")
        b, e = t["data_offsets"]
        if t["dtype"] == "F32":
            x = torch.from_numpy(np.frombuffer(data[b:e], dtype=np.float32).copy())
        else:
            x = torch.from_numpy(np.frombuffer(data[b:e], dtype=np.int16).copy()).view(torch.bfloat16)
        out[name] = x.reshape(t["shape"])
    del data
    return out


class LLaDA(torch.nn.Module):
    def __init__(self, c, w):
        super().__init__()
        self.c = c
        self.p = torch.nn.ParameterDict({k.replace(".", "__"): torch.nn.Parameter(v) for k, v in w.items()})
        self.lora = torch.nn.ParameterDict()
        self.lora_scale = 0.0

    def w(self, name):
        return self.p[("model.transformer." + name).replace(".", "__")]

    def add_lora(self, rank, alpha, targets):
        """A hand-written LoRA as PEFT computes it: W x + (alpha / r) B (A x), the base frozen, A and B
        float32 (B nonzero here, so both get gradients from the first step, as after a few updates)."""
        for p in self.p.values():
            p.requires_grad_(False)
        self.lora_scale = alpha / rank
        for l in range(self.c["n_layers"]):
            for t in targets:
                out_f, in_f = self.w(f"blocks.{l}.{t}.weight").shape
                a = torch.empty(rank, in_f).uniform_(-1 / math.sqrt(in_f), 1 / math.sqrt(in_f))
                self.lora[f"{l}__{t}__A"] = torch.nn.Parameter(a)
                self.lora[f"{l}__{t}__B"] = torch.nn.Parameter(torch.randn(out_f, rank) * 1e-3)

    def lin(self, h, l, name):
        y = F.linear(h, self.w(f"blocks.{l}.{name}.weight"))
        key = f"{l}__{name}__A"
        if key in self.lora:
            y = y + self.lora_scale * F.linear(F.linear(h, self.lora[key]), self.lora[f"{l}__{name}__B"])
        return y

    def rms(self, x, name):
        return self.w(name) * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.c["rms_norm_eps"]))

    def forward(self, ids):
        c = self.c
        B, T = ids.shape
        D, H, KV = c["d_model"], c["n_heads"], c["n_kv_heads"]
        hd = D // H
        inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float) / hd))
        freqs = torch.outer(torch.arange(T, dtype=torch.float), inv)
        emb = torch.cat([freqs, freqs], -1)
        cos, sin = emb.cos()[None, None], emb.sin()[None, None]

        def rope(u):
            u1, u2 = u[..., : hd // 2], u[..., hd // 2 :]
            return u * cos + torch.cat([-u2, u1], -1) * sin

        x = F.embedding(ids, self.w("wte.weight"))
        if c["input_emb_norm"]:
            x = x * math.sqrt(D)
        for l in range(c["n_layers"]):
            p = f"blocks.{l}."
            h = self.rms(x, p + "attn_norm.weight")
            q = self.lin(h, l, "q_proj").view(B, T, H, hd).transpose(1, 2)
            k = self.lin(h, l, "k_proj").view(B, T, KV, hd).transpose(1, 2)
            v = self.lin(h, l, "v_proj").view(B, T, KV, hd).transpose(1, 2)
            q, k = rope(q), rope(k)
            if KV != H:
                k = k.repeat_interleave(H // KV, 1)
                v = v.repeat_interleave(H // KV, 1)
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), -1)
            y = (att @ v).transpose(1, 2).reshape(B, T, D)
            x = x + self.lin(y, l, "attn_out")
            h = self.rms(x, p + "ff_norm.weight")
            x = x + self.lin(F.silu(self.lin(h, l, "ff_proj")) * self.lin(h, l, "up_proj"), l, "ff_out")
        h = self.rms(x, "ln_f.weight")
        head = self.w("wte.weight") if c["weight_tying"] else self.w("ff_out.weight")
        logits = F.linear(h, head)
        return logits / math.sqrt(D) if c["scale_logits"] else logits


def mean_field_logps(model, c, B, P, L, backward, p_mask_prompt=0.15):
    """d1's get_per_token_logps: one forward on [prompt with tokens masked at p_mask_prompt ; M*L],
    log-softmax over the vocabulary at the completion positions, gathered at the completion tokens."""
    M = c["mask_token_id"]
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, M, (B, P), generator=g)
    completion = torch.randint(0, M, (B, L), generator=g)
    prompt = torch.where(torch.rand(B, P, generator=g) < p_mask_prompt, torch.full_like(prompt, M), prompt)
    x = torch.cat([prompt, torch.full((B, L), M)], 1)
    with torch.set_grad_enabled(backward):
        logits = model(x)[:, P:]
        logps = torch.log_softmax(logits.float(), -1).gather(-1, completion[..., None]).squeeze(-1)
        if backward:
            model.zero_grad(set_to_none=True)
            (-logps.sum()).backward()
    return logps


@torch.no_grad()
def threshold_decode(model, c, B, P, L, block, tau):
    """Fast-dLLM's threshold decoding without cache, as its reference code does it: the whole batch
    steps together, every masked position of the current block with confidence >= tau is unmasked,
    and at least the most confident one per sequence. Returns the number of forwards."""
    M = c["mask_token_id"]
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randint(0, M, (B, P), generator=g), torch.full((B, L), M)], 1)
    forwards = 0
    for k in range(L // block):
        lo, hi = P + k * block, P + (k + 1) * block
        while (x[:, lo:hi] == M).any():
            logits = model(x)
            forwards += 1
            logits[..., M] = -float("inf")
            p = torch.softmax(logits.float(), -1)
            conf, x0 = p.max(-1)
            eligible = torch.zeros_like(x, dtype=torch.bool)
            eligible[:, lo:hi] = x[:, lo:hi] == M
            conf = torch.where(eligible, conf, torch.full_like(conf, -1.0))
            pick = conf >= tau
            best = conf.argmax(-1)
            has = eligible.any(-1)
            pick[torch.arange(B)[has], best[has]] = True
            pick &= eligible
            x = torch.where(pick, x0, x)
    return forwards


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--seqlen", type=int, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--check-tokens", default="")
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"], help="weights held in float32, or in BF16 with autocast")
    ap.add_argument("--export-onnx", default="", help="also write the model as ONNX (for onnxruntime-node)")
    ap.add_argument("--lora-rank", type=int, default=0, help="a hand-written LoRA on --lora-targets, the base frozen (the optimizer then steps the adapters)")
    ap.add_argument("--lora-alpha", type=float, default=0)
    ap.add_argument("--lora-targets", default="q_proj,k_proj,v_proj,up_proj")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    c = json.load(open(a.model + "/config.json"))
    weights = load_safetensors(a.model + "/model.safetensors")
    wdtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    model = LLaDA(c, {k: v.to(wdtype) for k, v in weights.items()})
    del weights
    if a.lora_rank:
        model.add_lora(a.lora_rank, a.lora_alpha or a.lora_rank / 2, a.lora_targets.split(","))
    if a.dtype == "bf16":
        model.forward = torch.autocast("cpu", dtype=torch.bfloat16)(model.forward)
    hello = {"torch": torch.__version__, "threads": a.threads, "dtype": a.dtype}
    if a.check_tokens:
        rows = [[int(t) for t in r.split(",")] for r in a.check_tokens.split(";")]
        with torch.no_grad():
            hello["logits"] = model(torch.tensor(rows)).flatten().tolist()
    if a.export_onnx:
        ids = torch.zeros(1, 4, dtype=torch.long)
        torch.onnx.export(model, (ids,), a.export_onnx, input_names=["ids"], output_names=["logits"],
                          dynamic_axes={"ids": {0: "batch", 1: "seq"}}, opset_version=14)
    B, T = a.batch, a.seqlen
    ids = torch.randint(0, c["vocab_size"] - 1, (B, T))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.1)
    # masked-diffusion step as LLaDA trains: full logits, CE on masked positions weighted by 1/p
    p = torch.rand(B, 1) * 0.999 + 0.001
    mask = torch.rand(B, T) < p
    noisy = torch.where(mask, torch.full_like(ids, c["mask_token_id"]), ids)

    def forward():
        with torch.no_grad():
            model(ids)

    def train():
        opt.zero_grad(set_to_none=True)
        logits = model(noisy)
        ce = F.cross_entropy(logits[mask], ids[mask], reduction="none") / p.expand(B, T)[mask]
        loss = ce.sum() / (B * T)
        loss.backward()
        opt.step()

    # Serve timing requests, one per line: "forward", "train", or "decode B P L BLOCK THRESHOLD", so
    # that the caller can interleave them with its own runs: on a shared machine, only interleaved
    # runs compare fairly.
    print(json.dumps(hello), flush=True)
    for line in sys.stdin:
        words = line.split()
        t0 = time.perf_counter()
        if words[0] == "decode":
            forwards = threshold_decode(model, c, *[int(w) for w in words[1:5]], float(words[5]))
            print(json.dumps({"seconds": time.perf_counter() - t0, "forwards": forwards}), flush=True)
            continue
        if words[0] == "meanfield":
            B, P, L, backward = (int(w) for w in words[1:5])
            t0 = time.perf_counter()
            mean_field_logps(model, c, B, P, L, bool(backward))
            print(json.dumps({"seconds": time.perf_counter() - t0}), flush=True)
            continue
        if words[0] == "meanfield-step":  # the likelihood pass's forward and backward, then AdamW
            B, P, L = (int(w) for w in words[1:4])
            t0 = time.perf_counter()
            mean_field_logps(model, c, B, P, L, True)
            opt.step()
            print(json.dumps({"seconds": time.perf_counter() - t0}), flush=True)
            continue
        {"forward": forward, "train": train}[words[0]]()
        print(json.dumps({"seconds": time.perf_counter() - t0}), flush=True)


if __name__ == "__main__":
    main()
