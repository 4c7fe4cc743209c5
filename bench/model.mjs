// `npm run bench -- model`: forward and forward+backward+AdamW tokens/s and GFLOP/s of the tiny,
// small and medium configs, the fraction of this machine's FMA peak (measured here, now), the GEMM
// kernel alone, and the same model in PyTorch in the same run when Debian's python3-torch is present.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { AdamW, DiffusionLM, presetConfig } from 'diffpo';
import native from 'diffpo/native';

const SHAPES = {
  tiny: { batch: 64, seqLen: 64 },
  small: { batch: 32, seqLen: 128 },
  medium: { batch: 8, seqLen: 256 },
};

/** Model FLOPs per token of one forward: every matrix product, attention included, LM head over all positions. */
export function forwardFlopsPerToken(c, seqLen) {
  const D = c.d_model,
    hd = D / c.n_heads,
    KVd = c.n_kv_heads * hd,
    F = c.mlp_hidden_size;
  const perLayer = 2 * (2 * D * D + 2 * D * KVd + 3 * D * F) + 4 * seqLen * D;
  return c.n_layers * perLayer + 2 * D * c.embedding_size;
}

async function medianSeconds(fn, reps) {
  await fn(); // warm-up (also grows the activation arena)
  const times = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    times.push((performance.now() - t0) / 1000);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

function pytorchAvailable() {
  return spawnSync('/usr/bin/python3', ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
}

function runPytorch(dir, batch, seqLen, threads, reps, checkTokens) {
  const r = spawnSync(
    '/usr/bin/python3',
    [new URL('./pytorch_llada.py', import.meta.url).pathname, '--model', dir, '--batch', String(batch), '--seqlen', String(seqLen), '--threads', String(threads), '--reps', String(reps), '--check-tokens', checkTokens],
    { encoding: 'utf8', env: { ...process.env, OMP_WAIT_POLICY: 'PASSIVE' }, maxBuffer: 1 << 28 },
  );
  if (r.status !== 0) throw new Error(`PyTorch run failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

export async function run(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      threads: { type: 'string', default: '2' },
      reps: { type: 'string', default: '5' },
      configs: { type: 'string', default: 'tiny,small,medium' },
      pytorch: { type: 'boolean', default: true },
      'no-pytorch': { type: 'boolean', default: false },
    },
  });
  const threads = Number(values.threads);
  const reps = Number(values.reps);
  const withTorch = !values['no-pytorch'] && pytorchAvailable();
  const peak1 = native.fmaPeak(1, 0.5);
  const peakT = native.fmaPeak(threads, 0.5);
  const gemm1 = native.gemmBench(4096, 1024, 256, 1, 7, 'auto');
  const gemmT = native.gemmBench(4096, 1024, 256, threads, 7, 'auto');
  const gemmPortable = native.gemmBench(4096, 1024, 256, 1, 2, 'portable');
  console.log(`FMA peak: ${peak1.toFixed(1)} GFLOP/s (1 thread), ${peakT.toFixed(1)} GFLOP/s (${threads} threads); GEMM kernel ${native.gemmKernel}`);
  console.log(`GEMM 4096x1024x256: ${gemm1.toFixed(1)} GFLOP/s 1 thread (${((100 * gemm1) / peak1).toFixed(0)}% of peak), ${gemmT.toFixed(1)} GFLOP/s ${threads} threads (${((100 * gemmT) / peakT).toFixed(0)}%); portable kernel ${gemmPortable.toFixed(1)} GFLOP/s`);
  const rows = [];
  for (const name of values.configs.split(',')) {
    const { batch, seqLen } = SHAPES[name];
    const config = presetConfig(name);
    const model = DiffusionLM.create(config, { seed: 1, threads });
    const N = batch * seqLen;
    const tokens = Int32Array.from({ length: N }, (_, i) => (i * 7919) % (config.vocab_size - 1));
    const fwdFlops = forwardFlopsPerToken(config, seqLen) * N;
    const fwdS = await medianSeconds(() => model.logits(tokens, { batch, seqLen }), reps);
    const opt = new AdamW(model, { lr: 1e-4, weightDecay: 0.1 });
    let seed = 0;
    const trainS = await medianSeconds(async () => {
      await model.zeroGrad();
      await model.maskedDiffusionLoss({ tokens, batch, seqLen, normalization: 'pretrain', seed: seed++ }, { backward: true });
      await opt.step();
    }, reps);
    const row = {
      config: name,
      batch,
      seqLen,
      params: model.numParameters,
      forward: { tokensPerS: N / fwdS, gflops: fwdFlops / fwdS / 1e9 },
      train: { tokensPerS: N / trainS, gflops: (3 * fwdFlops) / trainS / 1e9 },
    };
    if (withTorch) {
      const dir = mkdtempSync(join(tmpdir(), 'diffpo-bench-'));
      await model.save(dir);
      const check = [[1, 2, 3, 4, 5], [5, 4, 3, 2, 1]];
      const ours = await model.logits(Int32Array.from(check.flat()), { batch: 2, seqLen: 5 });
      const t = runPytorch(dir, batch, seqLen, threads, reps, check.map((r) => r.join(',')).join(';'));
      rmSync(dir, { recursive: true, force: true });
      const maxDiff = t.logits.reduce((m, v, i) => Math.max(m, Math.abs(v - ours[i])), 0);
      row.pytorch = {
        version: t.torch,
        forward: { tokensPerS: N / t.forward_s },
        train: { tokensPerS: N / t.train_s },
        logitsMaxAbsDiff: maxDiff,
      };
    }
    model.dispose();
    rows.push(row);
    const pt = row.pytorch;
    console.log(
      `${name}: forward ${row.forward.tokensPerS.toFixed(0)} tok/s ${row.forward.gflops.toFixed(1)} GFLOP/s; train ${row.train.tokensPerS.toFixed(0)} tok/s ${row.train.gflops.toFixed(1)} GFLOP/s` +
        (pt ? `; PyTorch forward ${pt.forward.tokensPerS.toFixed(0)} train ${pt.train.tokensPerS.toFixed(0)} tok/s (logits max |diff| ${pt.logitsMaxAbsDiff.toExponential(1)})` : ''),
    );
  }
  const pct = (g) => `${((100 * g) / peakT).toFixed(0)}%`;
  const lines = [
    `| config | B x T | params | forward tok/s | fwd GFLOP/s (peak %) | train tok/s | train GFLOP/s (peak %) |${withTorch ? ' PyTorch fwd tok/s | PyTorch train tok/s | fwd ratio | train ratio |' : ''}`,
    `|---|---|---|---|---|---|---|${withTorch ? '---|---|---|---|' : ''}`,
    ...rows.map((r) => {
      const base = `| ${r.config} | ${r.batch} x ${r.seqLen} | ${(r.params / 1e6).toFixed(2)}M | ${r.forward.tokensPerS.toFixed(0)} | ${r.forward.gflops.toFixed(1)} (${pct(r.forward.gflops)}) | ${r.train.tokensPerS.toFixed(0)} | ${r.train.gflops.toFixed(1)} (${pct(r.train.gflops)}) |`;
      if (!r.pytorch) return base;
      const p = r.pytorch;
      return `${base} ${p.forward.tokensPerS.toFixed(0)} | ${p.train.tokensPerS.toFixed(0)} | ${(r.forward.tokensPerS / p.forward.tokensPerS).toFixed(2)}x | ${(r.train.tokensPerS / p.train.tokensPerS).toFixed(2)}x |`;
    }),
  ];
  console.log('\n' + lines.join('\n'));
  const result = {
    date: new Date().toISOString(),
    threads,
    reps,
    gemmKernel: native.gemmKernel,
    fmaPeakGflops: { oneThread: peak1, threads: peakT },
    gemm4096x1024x256: { oneThreadGflops: gemm1, oneThreadPeakFraction: gemm1 / peak1, threadsGflops: gemmT, portableOneThreadGflops: gemmPortable },
    rows,
  };
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  writeFileSync(new URL('./results/model.json', import.meta.url), JSON.stringify(result, null, 2) + '\n');
}
