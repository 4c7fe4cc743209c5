// `npm run bench -- lora [--reps 3] [--threads 2] [--width 4096] [--rank 128] [--batch 1] [--prompt 64] [--gen 128]`:
// LoRA training on LLaDA-8B-Instruct's real layout at full width with one block (1.25B parameters, a
// 2.3 GiB BF16 file written by writeLladaFolder, random weights), BF16-resident, adapters of --rank on
// d1's targets (q_proj, k_proj, v_proj, up_proj), in one run:
// - one DiFFPO step from the CLI (`diffpo train --from DIR --task gsm8k --lora-rank R --steps 1
//   --limit 0`, 2 prompts x 2 completions of 32 tokens): its peak RSS against the target of 1.4 x the
//   BF16 file + 2 GiB, its wall time, and the largest file it leaves in the run folder;
// - the likelihood pass's training step, the step's heavy part: d1's mean-field pass (prompt tokens
//   masked at 0.15, the completion all masked, log-probs of the completion) forward and backward
//   through the frozen base into the adapters, then AdamW on the adapters, in diffpo and in PyTorch
//   (Debian's python3-torch, eager, BF16 weights under CPU autocast, a hand-written LoRA with the same
//   shapes; OMP_WAIT_POLICY=PASSIVE), interleaved, medians of --reps.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { AdamW, DiffusionLM, D1_LORA_TARGETS, writeLladaFolder } from 'diffpo';

import { pytorchAvailable, startPytorch } from './model.mjs';

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const gib = (b) => (b / 2 ** 30).toFixed(2);

/** Every file under dir with its size, largest first. */
function files(dir, prefix = '') {
  return readdirSync(join(dir, prefix), { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? files(dir, join(prefix, e.name)) : [{ path: join(prefix, e.name), bytes: statSync(join(dir, prefix, e.name)).size }]))
    .sort((a, b) => b.bytes - a.bytes);
}

export async function run(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      reps: { type: 'string', default: '3' },
      threads: { type: 'string', default: '2' },
      width: { type: 'string', default: '4096' },
      rank: { type: 'string', default: '128' },
      batch: { type: 'string', default: '1' },
      prompt: { type: 'string', default: '64' },
      gen: { type: 'string', default: '128' },
      'no-pytorch': { type: 'boolean', default: false },
    },
  });
  const [reps, threads, width, rank, B, P, L] = ['reps', 'threads', 'width', 'rank', 'batch', 'prompt', 'gen'].map((k) => Number(values[k]));
  const dir = mkdtempSync(join(tmpdir(), 'diffpo-lora-bench-'));
  let t0 = performance.now();
  const params = await writeLladaFolder(dir, { layers: 1, width, threads });
  const fileBytes = statSync(join(dir, 'model.safetensors')).size;
  console.log(`wrote the 1-block LLaDA-8B-shaped folder: ${params} parameters, ${gib(fileBytes)} GiB (${((performance.now() - t0) / 1000).toFixed(0)} s)`);

  // one DiFFPO step from the CLI, in its own process
  const runDir = join(dir, 'run');
  const cli = new URL('../dist/esm/app/cli.js', import.meta.url).pathname;
  const args = ['train', '--from', dir, '--task', 'gsm8k', '--lora-rank', String(rank), '--steps', '1', '--limit', '0', '--prompts-per-step', '2', '--group-size', '2', '--gen-length', '32', '--threads', String(threads), '--out', runDir];
  t0 = performance.now();
  const step = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
  if (step.status !== 0) throw new Error(`diffpo ${args.join(' ')} failed:\n${step.stderr}`);
  const cliSeconds = (performance.now() - t0) / 1000;
  const result = JSON.parse(readFileSync(join(runDir, 'result.json'), 'utf8'));
  const runFiles = files(runDir);
  const target = 1.4 * fileBytes + 2 * 2 ** 30;
  console.log(`CLI step: ${cliSeconds.toFixed(0)} s in all (${result.seconds.toFixed(0)} s training), peak RSS ${gib(result.peakRssBytes)} GiB (target ${gib(target)}), largest file ${runFiles[0].path} ${(runFiles[0].bytes / 2 ** 20).toFixed(1)} MiB`);

  // the likelihood pass's training step, interleaved with PyTorch's
  const model = await DiffusionLM.fromPretrained(dir, { dtype: 'bf16', threads });
  await model.addLora({ rank, targets: D1_LORA_TARGETS });
  const opt = new AdamW(model, { lr: 1e-4, weightDecay: 0.1 });
  const M = model.config.mask_token_id;
  let state = 1;
  const rand = (n) => ((state = (Math.imul(state, 1103515245) + 12345) >>> 0), state % n);
  const T = P + L;
  const tokens = Int32Array.from({ length: B * T }, (_, i) => (i % T < P && rand(100) >= 15 ? rand(M) : M));
  const rows = Int32Array.from({ length: B * L }, (_, i) => Math.floor(i / L) * T + P + (i % L));
  const targets = Int32Array.from({ length: B * L }, () => rand(M));
  const torch = !values['no-pytorch'] && pytorchAvailable() ? await startPytorch(dir, B, T, threads, '', null, 'bf16', ['--lora-rank', String(rank)]) : null;
  const times = { diffpo: [], pytorch: [] };
  for (let rep = -1; rep < reps; rep++) {
    t0 = performance.now();
    await model.zeroGrad();
    await model.selectedLogProbs({ tokens, batch: B, seqLen: T, rows, targets }, { backward: true });
    await opt.step();
    if (rep >= 0) times.diffpo.push((performance.now() - t0) / 1000);
    if (torch) {
      const s = await torch.time(`meanfield-step ${B} ${P} ${L}`);
      if (rep >= 0) times.pytorch.push(s);
    }
    console.log(`rep ${rep + 1} of ${reps} done`);
  }
  torch?.close();
  model.dispose();
  rmSync(dir, { recursive: true, force: true });
  const d = median(times.diffpo),
    p = torch ? median(times.pytorch) : null;
  const lines = [
    `| LoRA r${rank} on q,k,v,up, BF16 base, 1 full-width block | value |`,
    `|---|---|`,
    `| CLI DiFFPO step (2 x 2 rollouts of 32 tokens), peak RSS | ${gib(result.peakRssBytes)} GiB (target: 1.4 x ${gib(fileBytes)} GiB file + 2 GiB = ${gib(target)} GiB) |`,
    `| its largest file in the run folder | ${runFiles[0].path}, ${(runFiles[0].bytes / 2 ** 20).toFixed(1)} MiB |`,
    `| its training time (rollouts, likelihood passes, updates) | ${result.seconds.toFixed(1)} s |`,
    `| likelihood step (${B} x (${P} + ${L}) tokens, ${B * L} scored), diffpo | ${d.toFixed(2)} s |`,
    `| the same in PyTorch (${torch?.hello.torch ?? 'n/a'}) | ${p === null ? 'n/a' : `${p.toFixed(2)} s`} |`,
    `| PyTorch / diffpo | ${p === null ? 'n/a' : `${(p / d).toFixed(2)}x`} |`,
  ];
  console.log('\n' + lines.join('\n'));
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  writeFileSync(
    new URL('./results/lora.json', import.meta.url),
    JSON.stringify(
      { date: new Date().toISOString(), command: `npm run bench -- lora ${argv.join(' ')}`.trim(), threads, reps, width, rank, params, fileBytes, cli: { args, seconds: cliSeconds, trainSeconds: result.seconds, peakRssBytes: result.peakRssBytes, targetBytes: target, files: runFiles.slice(0, 5) }, step: { batch: B, prompt: P, gen: L, diffpoSeconds: times.diffpo, pytorchSeconds: times.pytorch, pytorch: torch?.hello ?? null }, table: lines.join('\n') },
      null,
      2,
    ) + '\n',
  );
}
