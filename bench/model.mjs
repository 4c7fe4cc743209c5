// `npm run bench -- model`: forward and forward+backward+AdamW tokens/s and GFLOP/s of the tiny,
// small and medium configs, the fraction of this machine's FMA peak (measured here, now), the GEMM
// kernel alone, and, in the same run, the same model on the same weights in PyTorch (Debian's
// python3-torch with OpenBLAS: `apt-get install python3-torch libopenblas0-pthread`) and in
// onnxruntime-node (`npm install --no-save --ignore-scripts onnxruntime-node`) when they are present.
// The machine is shared and noisy, so every repetition runs diffpo, PyTorch and onnxruntime back to
// back (interleaved) and the tables report medians.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

import { AdamW, DiffusionLM, presetConfig } from 'diffpo';

// the GEMM and FMA-peak benchmarks live in the test addon, which the package does not ship
const native = createRequire(import.meta.url)('../build/Release/testing/diffpo_testing.node');

export const SHAPES = {
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

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

async function seconds(fn) {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

export function pytorchAvailable() {
  return spawnSync('/usr/bin/python3', ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
}

/** PyTorch's BLAS as Debian's alternatives resolve it (the reference BLAS would flatter diffpo 30x). */
function pytorchBlas() {
  const r = spawnSync('readlink', ['-f', '/usr/lib/x86_64-linux-gnu/libblas.so.3'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : 'unknown';
}

async function loadOrt() {
  try {
    return (await import('onnxruntime-node')).default;
  } catch {
    return null;
  }
}

/** The PyTorch model as a child process that times one forward, training step or decoding run per request. */
export async function startPytorch(dir, batch, seqLen, threads, checkTokens, onnxPath, dtype = 'f32', extra = []) {
  const child = spawn(
    '/usr/bin/python3',
    [new URL('./pytorch_llada.py', import.meta.url).pathname, '--model', dir, '--batch', String(batch), '--seqlen', String(seqLen), '--threads', String(threads), ...(checkTokens ? ['--check-tokens', checkTokens] : []), ...(onnxPath ? ['--export-onnx', onnxPath] : []), '--dtype', dtype, ...extra],
    { env: { ...process.env, OMP_WAIT_POLICY: 'PASSIVE' }, stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async () => {
    const { value, done } = await lines.next();
    if (done) throw new Error('the PyTorch process exited');
    return JSON.parse(value);
  };
  const hello = await next();
  return {
    hello,
    async request(line) {
      child.stdin.write(line + '\n');
      return next();
    },
    async time(what) {
      return (await this.request(what)).seconds;
    },
    close() {
      child.stdin.end();
    },
  };
}

export async function run(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      threads: { type: 'string', default: '2' },
      reps: { type: 'string', default: '7' },
      configs: { type: 'string', default: 'tiny,small,medium' },
      'no-pytorch': { type: 'boolean', default: false },
    },
  });
  const threads = Number(values.threads);
  const reps = Number(values.reps);
  const withTorch = !values['no-pytorch'] && pytorchAvailable();
  const ort = withTorch ? await loadOrt() : null; // the ONNX file comes from the PyTorch export
  if (withTorch) console.log(`PyTorch BLAS: ${pytorchBlas()}`);
  const peak1 = native.fmaPeak(1, 0.5);
  const peakT = native.fmaPeak(threads, 0.5);
  const gemm1 = native.gemmBench(4096, 1024, 256, 1, 9, 'auto');
  const gemmT = native.gemmBench(4096, 1024, 256, threads, 9, 'auto');
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
    const opt = new AdamW(model, { lr: 1e-4, weightDecay: 0.1 });
    let seed = 0;
    const ours = {
      forward: () => model.logits(tokens, { batch, seqLen }),
      async train() {
        await model.zeroGrad();
        await model.maskedDiffusionLoss({ tokens, batch, seqLen, normalization: 'pretrain', seed: seed++ }, { backward: true });
        await opt.step();
      },
    };
    let torch = null,
      session = null,
      dir = null,
      logitsMaxAbsDiff = null;
    if (withTorch) {
      dir = mkdtempSync(join(tmpdir(), 'diffpo-bench-'));
      await model.save(dir);
      const check = [[1, 2, 3, 4, 5], [5, 4, 3, 2, 1]];
      const want = await model.logits(Int32Array.from(check.flat()), { batch: 2, seqLen: 5 });
      const onnxPath = ort ? join(dir, 'model.onnx') : null;
      torch = await startPytorch(dir, batch, seqLen, threads, check.map((r) => r.join(',')).join(';'), onnxPath);
      logitsMaxAbsDiff = torch.hello.logits.reduce((m, v, i) => Math.max(m, Math.abs(v - want[i])), 0);
      // no spinning: ORT's idle threads would otherwise steal the CPU from the next contender
      if (ort)
        session = await ort.InferenceSession.create(onnxPath, {
          intraOpNumThreads: threads,
          interOpNumThreads: 1,
          graphOptimizationLevel: 'all',
          extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
        });
    }
    const feeds = session ? { ids: new ort.Tensor('int64', BigInt64Array.from(tokens, BigInt), [batch, seqLen]) } : null;
    const t = { ours: { forward: [], train: [] }, torch: { forward: [], train: [] }, ort: { forward: [] } };
    for (let rep = -1; rep < reps; rep++) {
      // rep -1 warms every contender up (and grows diffpo's activation arena)
      const sample = {
        oursF: await seconds(ours.forward),
        torchF: torch ? await torch.time('forward') : null,
        ortF: session ? await seconds(() => session.run(feeds)) : null,
        oursT: await seconds(ours.train),
        torchT: torch ? await torch.time('train') : null,
      };
      if (rep < 0) continue;
      t.ours.forward.push(sample.oursF);
      t.ours.train.push(sample.oursT);
      if (torch) t.torch.forward.push(sample.torchF), t.torch.train.push(sample.torchT);
      if (session) t.ort.forward.push(sample.ortF);
    }
    const fwdFlops = forwardFlopsPerToken(config, seqLen) * N;
    const row = {
      config: name,
      batch,
      seqLen,
      params: model.numParameters,
      forward: { tokensPerS: N / median(t.ours.forward), gflops: fwdFlops / median(t.ours.forward) / 1e9 },
      train: { tokensPerS: N / median(t.ours.train), gflops: (3 * fwdFlops) / median(t.ours.train) / 1e9 },
    };
    if (torch) {
      row.pytorch = {
        version: torch.hello.torch,
        forward: { tokensPerS: N / median(t.torch.forward) },
        train: { tokensPerS: N / median(t.torch.train) },
        logitsMaxAbsDiff,
      };
      torch.close();
    }
    if (session) {
      row.onnxruntime = { forward: { tokensPerS: N / median(t.ort.forward) } };
      await session.release();
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
    model.dispose();
    rows.push(row);
    const pt = row.pytorch;
    console.log(
      `${name}: forward ${row.forward.tokensPerS.toFixed(0)} tok/s ${row.forward.gflops.toFixed(1)} GFLOP/s; train ${row.train.tokensPerS.toFixed(0)} tok/s ${row.train.gflops.toFixed(1)} GFLOP/s` +
        (pt ? `; PyTorch forward ${pt.forward.tokensPerS.toFixed(0)} train ${pt.train.tokensPerS.toFixed(0)} tok/s (logits max |diff| ${pt.logitsMaxAbsDiff.toExponential(1)})` : '') +
        (row.onnxruntime ? `; onnxruntime forward ${row.onnxruntime.forward.tokensPerS.toFixed(0)} tok/s` : ''),
    );
  }
  const pct = (g) => `${((100 * g) / peakT).toFixed(0)}%`;
  const x = (a, b) => `${(a / b).toFixed(2)}x`;
  const lines = [
    `| config | B x T | params | forward tok/s | fwd GFLOP/s (peak %) | train tok/s | train GFLOP/s (peak %) |${withTorch ? ' PyTorch fwd / train tok/s | vs PyTorch fwd / train |' : ''}${ort ? ' ORT fwd tok/s | vs ORT fwd |' : ''}`,
    `|---|---|---|---|---|---|---|${withTorch ? '---|---|' : ''}${ort ? '---|---|' : ''}`,
    ...rows.map((r) => {
      let line = `| ${r.config} | ${r.batch} x ${r.seqLen} | ${(r.params / 1e6).toFixed(2)}M | ${r.forward.tokensPerS.toFixed(0)} | ${r.forward.gflops.toFixed(1)} (${pct(r.forward.gflops)}) | ${r.train.tokensPerS.toFixed(0)} | ${r.train.gflops.toFixed(1)} (${pct(r.train.gflops)}) |`;
      const p = r.pytorch,
        o = r.onnxruntime;
      if (p) line += ` ${p.forward.tokensPerS.toFixed(0)} / ${p.train.tokensPerS.toFixed(0)} | ${x(r.forward.tokensPerS, p.forward.tokensPerS)} / ${x(r.train.tokensPerS, p.train.tokensPerS)} |`;
      if (o) line += ` ${o.forward.tokensPerS.toFixed(0)} | ${x(r.forward.tokensPerS, o.forward.tokensPerS)} |`;
      return line;
    }),
  ];
  console.log('\n' + lines.join('\n'));
  const result = {
    date: new Date().toISOString(),
    command: `npm run bench -- model ${argv.join(' ')}`.trim(),
    threads,
    reps,
    gemmKernel: native.gemmKernel,
    pytorchBlas: withTorch ? pytorchBlas() : null,
    fmaPeakGflops: { oneThread: peak1, threads: peakT },
    gemm4096x1024x256: { oneThreadGflops: gemm1, oneThreadPeakFraction: gemm1 / peak1, threadsGflops: gemmT, portableOneThreadGflops: gemmPortable },
    rows,
    table: lines.join('\n'),
  };
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  writeFileSync(new URL('./results/model.json', import.meta.url), JSON.stringify(result, null, 2) + '\n');
}
