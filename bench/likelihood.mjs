// `npm run bench -- likelihood [--reps 3] [--threads 2]`: sequences/s of each likelihood estimator,
// forward only and forward+backward, on the small config with batch 32, prompts of 64 and completions
// of 64 tokens decoded in 16 steps (4 tokens a step); interleaved with d1's mean-field estimator in
// PyTorch on the same weights when Debian's python3-torch is installed.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { DiffusionLM, planEstimate, presetConfig, runPlan } from 'diffpo';

import { pytorchAvailable, startPytorch } from './model.mjs';

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

export async function run(argv) {
  const { values } = parseArgs({
    args: argv,
    options: { reps: { type: 'string', default: '3' }, threads: { type: 'string', default: '2' }, 'no-pytorch': { type: 'boolean', default: false } },
  });
  const reps = Number(values.reps),
    threads = Number(values.threads);
  const B = 32,
    P = 64,
    L = 64,
    STEPS = 16;
  const config = presetConfig('small');
  const model = DiffusionLM.create(config, { seed: 1, threads });
  let state = 3;
  const rand = (n) => ((state = (Math.imul(state, 1103515245) + 12345) >>> 0), state % n);
  const prompts = Array.from({ length: B }, () => Int32Array.from({ length: P }, () => rand(config.mask_token_id)));
  const completions = Int32Array.from({ length: B * L }, () => rand(config.mask_token_id));
  // a trajectory of 16 steps per sequence, 4 tokens a step in a random order
  const decodeStep = new Int32Array(B * L);
  for (let b = 0; b < B; b++) {
    const order = Array.from({ length: L }, (_, i) => i);
    for (let i = L - 1; i > 0; i--) {
      const j = rand(i + 1);
      [order[i], order[j]] = [order[j], order[i]];
    }
    order.forEach((g, k) => (decodeStep[b * L + g] = 1 + Math.floor(k / (L / STEPS))));
  }
  const batch = { prompts, completions, decodeStep };
  const weights = new Float32Array(B * L).fill(1);
  const withTorch = !values['no-pytorch'] && pytorchAvailable();
  let torch = null,
    dir = null;
  if (withTorch) {
    dir = mkdtempSync(join(tmpdir(), 'diffpo-likelihood-'));
    await model.save(dir);
    torch = await startPytorch(dir, 1, 8, threads, '', null);
  }
  const estimators = [
    ['mean-field', { estimator: 'mean-field', pMaskPrompt: 0.15 }],
    ['two-stage', { estimator: 'two-stage', pMaskPrompt: 0.15 }],
    ['trajectory (shrink 4)', { estimator: 'trajectory', shrink: 4 }],
    ['trajectory (exact)', { estimator: 'trajectory' }],
    ['elbo (1 sample)', { estimator: 'elbo', mcSamples: 1 }],
  ];
  const rows = [];
  for (const [name, options] of estimators) {
    const t = { fwd: [], bwd: [], torchFwd: [], torchBwd: [] };
    for (let rep = -1; rep < reps; rep++) {
      const plan = planEstimate(model, batch, { ...options, seed: rep + 10 });
      let t0 = performance.now();
      await runPlan(model, batch, plan);
      const fwd = (performance.now() - t0) / 1000;
      await model.zeroGrad();
      t0 = performance.now();
      await runPlan(model, batch, plan, { backward: true, tokenWeights: weights });
      const bwd = (performance.now() - t0) / 1000;
      const withBaseline = torch && options.estimator === 'mean-field';
      const tf = withBaseline ? (await torch.request(`meanfield ${B} ${P} ${L} 0`)).seconds : null;
      const tb = withBaseline ? (await torch.request(`meanfield ${B} ${P} ${L} 1`)).seconds : null;
      if (rep < 0) continue;
      t.fwd.push(fwd), t.bwd.push(bwd);
      if (withBaseline) t.torchFwd.push(tf), t.torchBwd.push(tb);
    }
    const passes = planEstimate(model, batch, options).passes.length;
    const row = { estimator: name, passes, forwardSeqPerS: B / median(t.fwd), backwardSeqPerS: B / median(t.bwd) };
    if (t.torchFwd.length) row.pytorch = { forwardSeqPerS: B / median(t.torchFwd), backwardSeqPerS: B / median(t.torchBwd) };
    rows.push(row);
    console.log(
      `${name}: ${passes} passes, forward ${row.forwardSeqPerS.toFixed(1)} seq/s, forward+backward ${row.backwardSeqPerS.toFixed(1)} seq/s` +
        (row.pytorch ? `; PyTorch d1 mean-field ${row.pytorch.forwardSeqPerS.toFixed(1)} / ${row.pytorch.backwardSeqPerS.toFixed(1)} seq/s` : ''),
    );
  }
  torch?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  model.dispose();
  const mf = rows[0];
  const lines = [
    `| estimator | passes (B=32) | forward seq/s | forward+backward seq/s |`,
    `|---|---|---|---|`,
    ...rows.map((r) => `| ${r.estimator} | ${r.passes} | ${r.forwardSeqPerS.toFixed(1)} | ${r.backwardSeqPerS.toFixed(1)} |`),
    ...(mf.pytorch
      ? [`| d1 mean-field in PyTorch | 32 | ${mf.pytorch.forwardSeqPerS.toFixed(1)} (diffpo ${(mf.forwardSeqPerS / mf.pytorch.forwardSeqPerS).toFixed(2)}x) | ${mf.pytorch.backwardSeqPerS.toFixed(1)} (diffpo ${(mf.backwardSeqPerS / mf.pytorch.backwardSeqPerS).toFixed(2)}x) |`]
      : []),
  ];
  console.log('\n' + lines.join('\n'));
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  writeFileSync(
    new URL('./results/likelihood.json', import.meta.url),
    JSON.stringify({ date: new Date().toISOString(), command: `npm run bench -- likelihood ${argv.join(' ')}`.trim(), threads, reps, rows, table: lines.join('\n') }, null, 2) + '\n',
  );
}
