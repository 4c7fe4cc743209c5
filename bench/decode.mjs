// `npm run bench -- decode [--reps 3] [--threads 2]`: threshold decoding (Fast-dLLM's rule, tau 0.9)
// on the small config, prompt 64 + 64 generated in blocks of 32, at batch 1 and 32, and 256 generated
// at batch 1, without a KV cache and with the prefix and dual caches: ms per forward (NFE) and
// generated tokens/s, interleaved with the same decoding loop in PyTorch (no cache) on the same
// weights when Debian's python3-torch is installed. A randomly initialised model is never confident,
// so every step unmasks one token: the runs measure the cost of a decoding step.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { DiffusionLM, presetConfig } from 'diffpo';

import { pytorchAvailable, startPytorch } from './model.mjs';

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

const CASES = [
  { batch: 1, prompt: 64, gen: 64, block: 32 },
  { batch: 32, prompt: 64, gen: 64, block: 32 },
  { batch: 1, prompt: 64, gen: 256, block: 32 },
];

export async function run(argv) {
  const { values } = parseArgs({
    args: argv,
    options: { reps: { type: 'string', default: '3' }, threads: { type: 'string', default: '2' }, 'no-pytorch': { type: 'boolean', default: false } },
  });
  const reps = Number(values.reps),
    threads = Number(values.threads),
    tau = 0.9;
  const config = presetConfig('small');
  const model = DiffusionLM.create(config, { seed: 1, threads });
  const withTorch = !values['no-pytorch'] && pytorchAvailable();
  let torch = null,
    dir = null;
  if (withTorch) {
    dir = mkdtempSync(join(tmpdir(), 'diffpo-decode-'));
    await model.save(dir);
    torch = await startPytorch(dir, 1, 8, threads, '', null);
  }
  const rows = [];
  for (const shape of CASES)
    for (const cache of ['none', 'prefix', 'dual']) {
    const c = { ...shape, cache };
    let state = 1;
    const prompts = Array.from({ length: c.batch }, () =>
      Int32Array.from({ length: c.prompt }, () => ((state = (Math.imul(state, 1103515245) + 12345) >>> 0), state % config.mask_token_id)),
    );
    const ours = [],
      theirs = [];
    let forwards = 0,
      torchForwards = 0;
    for (let rep = -1; rep < reps; rep++) {
      const t0 = performance.now();
      const r = await model.generate(prompts, { genLength: c.gen, blockLength: c.block, strategy: { kind: 'threshold', threshold: tau }, cache });
      const s = (performance.now() - t0) / 1000;
      forwards = Math.max(...r.nfe);
      if (rep >= 0) ours.push(s);
      if (torch && cache === 'none') {
        const t = await torch.request(`decode ${c.batch} ${c.prompt} ${c.gen} ${c.block} ${tau}`);
        torchForwards = t.forwards;
        if (rep >= 0) theirs.push(t.seconds);
      }
    }
    const row = {
      ...c,
      forwards,
      msPerNfe: (1000 * median(ours)) / forwards,
      tokensPerS: (c.batch * c.gen) / median(ours),
    };
    if (theirs.length) row.pytorch = { forwards: torchForwards, msPerNfe: (1000 * median(theirs)) / torchForwards, tokensPerS: (c.batch * c.gen) / median(theirs) };
    rows.push(row);
    console.log(
      `batch ${c.batch}, prompt ${c.prompt} + ${c.gen}, cache ${cache}: ${row.msPerNfe.toFixed(2)} ms/NFE, ${row.tokensPerS.toFixed(0)} tok/s` +
        (row.pytorch ? `; PyTorch ${row.pytorch.msPerNfe.toFixed(2)} ms/NFE, ${row.pytorch.tokensPerS.toFixed(0)} tok/s` : ''),
    );
  }
  torch?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  model.dispose();
  const lines = [
    `| batch | prompt + generated (block) | cache | NFE | ms / NFE | tokens/s | vs no cache |${withTorch ? ' PyTorch (no cache) ms / NFE, tokens/s | PyTorch ms/NFE / diffpo ms/NFE |' : ''}`,
    `|---|---|---|---|---|---|---|${withTorch ? '---|---|' : ''}`,
    ...rows.map((r) => {
      const base = rows.find((x) => x.batch === r.batch && x.gen === r.gen && x.cache === 'none');
      const torchRow = base.pytorch;
      return (
        `| ${r.batch} | ${r.prompt} + ${r.gen} (${r.block}) | ${r.cache} | ${r.forwards} | ${r.msPerNfe.toFixed(2)} | ${r.tokensPerS.toFixed(0)} | ${(r.tokensPerS / base.tokensPerS).toFixed(2)}x |` +
        (torchRow ? ` ${torchRow.msPerNfe.toFixed(2)}, ${torchRow.tokensPerS.toFixed(0)} | ${(torchRow.msPerNfe / r.msPerNfe).toFixed(2)}x |` : '')
      );
    }),
  ];
  console.log('\n' + lines.join('\n'));
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  writeFileSync(
    new URL('./results/decode.json', import.meta.url),
    JSON.stringify({ date: new Date().toISOString(), command: `npm run bench -- decode ${argv.join(' ')}`.trim(), threads, reps, threshold: tau, rows, table: lines.join('\n') }, null, 2) + '\n',
  );
}
