// `npm run bench -- llada [--reps 2] [--threads 2] [--width 4096] [--steps 32]`: LLaDA-8B-Instruct's
// real layout at full width with one block (1.25B parameters, a 2.3 GiB BF16 file written by
// writeLladaFolder, random weights), loaded BF16-resident and float32-resident, in one run:
// - forward: one (1, 512) forward with full logits, tokens/s;
// - decoding at batch 1, prompt 256 + 256 generated in blocks of 32, LLaDA's schedule with --steps
//   forwards in all (a random model is never confident, so a fixed schedule keeps the work the same
//   for every run), without a cache and with the dual cache: ms per NFE;
// - PyTorch (Debian's python3-torch, eager, OMP_WAIT_POLICY=PASSIVE) on the same file with BF16
//   weights under CPU autocast, and with float32 weights: ms per forward of the whole canvas, which
//   is its cost per NFE without a cache (LLaDA's and Fast-dLLM's reference loops).
// Runs are interleaved and the medians of --reps repeats reported. Decoding reads every weight once
// per forward at batch 1, so BF16 weights halve the bytes the GEMMs stream.
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { DiffusionLM, writeLladaFolder } from 'diffpo';

import { pytorchAvailable, startPytorch } from './model.mjs';

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

export async function run(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      reps: { type: 'string', default: '2' },
      threads: { type: 'string', default: '2' },
      width: { type: 'string', default: '4096' },
      steps: { type: 'string', default: '32' },
      'no-pytorch': { type: 'boolean', default: false },
    },
  });
  const reps = Number(values.reps),
    threads = Number(values.threads),
    width = Number(values.width),
    steps = Number(values.steps);
  const P = 256,
    L = 256,
    block = 32;
  const dir = mkdtempSync(join(tmpdir(), 'diffpo-llada-'));
  let t0 = performance.now();
  const params = await writeLladaFolder(dir, { layers: 1, width, threads });
  const fileBytes = statSync(join(dir, 'model.safetensors')).size;
  console.log(`wrote the 1-block LLaDA-8B-shaped folder: ${params} parameters, ${(fileBytes / 2 ** 30).toFixed(2)} GiB (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
  const models = {};
  for (const dtype of ['bf16', 'f32']) {
    t0 = performance.now();
    models[dtype] = await DiffusionLM.fromPretrained(dir, { dtype, threads });
    console.log(`loaded ${dtype}-resident in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  const torch = {};
  if (!values['no-pytorch'] && pytorchAvailable())
    for (const dtype of ['bf16', 'f32']) torch[dtype] = await startPytorch(dir, 1, P + L, threads, '', null, dtype);
  const M = models.bf16.config.mask_token_id;
  let state = 1;
  const prompt = Int32Array.from({ length: P }, () => ((state = (Math.imul(state, 1103515245) + 12345) >>> 0), state % M));
  const canvas = Int32Array.from({ length: P + L }, (_, i) => (i < P ? prompt[i] : M));
  const cases = [
    { name: 'forward', unit: 'tokens/s' },
    { name: 'decode', cache: 'none', unit: 'ms/NFE' },
    { name: 'decode', cache: 'dual', unit: 'ms/NFE' },
  ];
  const times = {};
  const record = (key, v) => (times[key] ??= []).push(v);
  for (let rep = -1; rep < reps; rep++) {
    for (const dtype of ['bf16', 'f32']) {
      const m = models[dtype];
      for (const c of cases) {
        const t = performance.now();
        if (c.name === 'forward') {
          await m.logits(canvas, { batch: 1, seqLen: P + L });
          if (rep >= 0) record(`diffpo ${dtype} forward`, (P + L) / ((performance.now() - t) / 1000));
        } else {
          const r = await m.generate([prompt], { genLength: L, blockLength: block, strategy: { kind: 'steps', steps }, cache: c.cache });
          if (rep >= 0) record(`diffpo ${dtype} decode ${c.cache}`, (performance.now() - t) / r.nfe[0]);
        }
      }
      if (torch[dtype]) {
        const r = await torch[dtype].request('forward');
        if (rep >= 0) record(`pytorch ${dtype} forward`, r.seconds);
      }
    }
    console.log(`rep ${rep + 1} of ${reps} done`);
  }
  for (const t of Object.values(torch)) t.close();
  for (const m of Object.values(models)) m.dispose();
  rmSync(dir, { recursive: true, force: true });
  const med = (k) => (times[k] ? median(times[k]) : null);
  const rows = ['bf16', 'f32'].map((dtype) => ({
    weights: dtype,
    forwardTokensPerS: med(`diffpo ${dtype} forward`),
    decodeMsPerNfe: { none: med(`diffpo ${dtype} decode none`), dual: med(`diffpo ${dtype} decode dual`) },
    pytorch: torch[dtype] ? { forwardTokensPerS: (P + L) / med(`pytorch ${dtype} forward`), msPerNfeNoCache: 1000 * med(`pytorch ${dtype} forward`) } : null,
  }));
  const f = (x, d = 1) => (x === null || x === undefined ? 'n/a' : x.toFixed(d));
  const [b, w] = rows;
  const lines = [
    `| weights | forward (1 x 512, full logits) tokens/s | decode ms/NFE, no cache | decode ms/NFE, dual cache | PyTorch forward tokens/s | PyTorch ms/NFE (no cache) | PyTorch / diffpo, no cache |`,
    `|---|---|---|---|---|---|---|`,
    ...rows.map(
      (r) =>
        `| ${r.weights === 'bf16' ? 'BF16-resident' : 'float32-resident'} | ${f(r.forwardTokensPerS)} | ${f(r.decodeMsPerNfe.none)} | ${f(r.decodeMsPerNfe.dual)} | ${f(r.pytorch?.forwardTokensPerS)} | ${f(r.pytorch?.msPerNfeNoCache)} | ${r.pytorch ? (r.pytorch.msPerNfeNoCache / r.decodeMsPerNfe.none).toFixed(2) + 'x' : 'n/a'} |`,
    ),
    '',
    `BF16 over float32 residency: forward ${(b.forwardTokensPerS / w.forwardTokensPerS).toFixed(2)}x, decoding ${(w.decodeMsPerNfe.none / b.decodeMsPerNfe.none).toFixed(2)}x (no cache), ${(w.decodeMsPerNfe.dual / b.decodeMsPerNfe.dual).toFixed(2)}x (dual cache).`,
  ];
  console.log('\n' + lines.join('\n'));
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  writeFileSync(
    new URL('./results/llada.json', import.meta.url),
    JSON.stringify({ date: new Date().toISOString(), command: `npm run bench -- llada ${argv.join(' ')}`.trim(), threads, reps, width, params, fileBytes, prompt: P, generated: L, block, steps, rows, table: lines.join('\n') }, null, 2) + '\n',
  );
}
