// `npm run bench -- parallel [--reps 3] [--steps 10]`: data parallelism on this machine. SFT steps
// (tiny and small configs) and DiFFPO steps (the shipped sudoku4 base, the main job's settings) at
// 1 process x 2 threads against `mpirun -np 2` x 1 thread, the same global batch; the all-reduce time
// per step; the all-reduce alone against the bytes it moves; and, on paper, the all-reduce of a
// LLaDA-8B-sized model's gradients at NVLink and 100 Gb/s Ethernet bandwidths. Runs alternate
// between the two layouts (the machine is shared and noisy) and the table reports medians.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const MPIRUN = ['-np', '2', '--allow-run-as-root', '--oversubscribe'];
const worker = join(import.meta.dirname, 'parallel-worker.mjs');
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

function once(ranks, args) {
  const argv = [worker, ...args];
  const r = ranks === 1 ? spawnSync(process.execPath, argv, { encoding: 'utf8' }) : spawnSync('mpirun', [...MPIRUN, process.execPath, ...argv], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${ranks === 1 ? 'node' : 'mpirun -np 2 node'} ${argv.join(' ')} failed:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1));
}

/** Ring all-reduce: each of N ranks sends and receives 2 (N - 1) / N of the buffer. */
export function ringAllReduceSeconds(bytes, ranks, bytesPerS) {
  return (2 * (ranks - 1) * bytes) / ranks / bytesPerS;
}

export async function run(argv) {
  const { values } = parseArgs({ args: argv, options: { reps: { type: 'string', default: '3' }, steps: { type: 'string', default: '10' } } });
  if (spawnSync('mpirun', ['--version']).status !== 0) throw new Error('the parallel benchmark needs mpirun: apt-get install openmpi-bin libopenmpi-dev');
  const reps = Number(values.reps),
    steps = values.steps;
  const cases = [
    { name: 'SFT, tiny config (sudoku4, batch 32)', args: ['sft', steps, '', 'tiny'] },
    { name: 'SFT, small config (sudoku4, batch 32)', args: ['sft', steps, '', 'small'] },
    { name: 'DiFFPO, sudoku4 base (8 prompts x 6)', args: ['rl', String(Math.max(4, Math.floor(steps / 2))), ''] },
  ];
  const rows = [];
  for (const c of cases) {
    const one = [],
      two = [];
    for (let i = 0; i < reps; i++) {
      one.push(once(1, c.args.map((a) => (a === '' ? '2' : a))));
      two.push(once(2, c.args.map((a) => (a === '' ? '1' : a))));
    }
    const row = {
      name: c.name,
      parameters: one[0].parameters,
      gradientBytes: one[0].gradientBytes,
      oneProcess: { stepMs: median(one.map((r) => r.stepMs)), tokensPerS: median(one.map((r) => r.tokensPerS)) },
      twoProcesses: { stepMs: median(two.map((r) => r.stepMs)), tokensPerS: median(two.map((r) => r.tokensPerS)), allReduceMsPerStep: median(two.map((r) => r.allReduceMsPerStep)) },
    };
    row.ratio = row.twoProcesses.tokensPerS / row.oneProcess.tokensPerS;
    rows.push(row);
    console.error(`${c.name}: done`);
  }
  const reduce = once(2, ['allreduce', '0', '1']);
  // on paper: LLaDA-8B (8.0e9 parameters), fp32 gradients, ring all-reduce over 8 ranks
  const llada = 8.0e9 * 4;
  const links = [
    { name: 'NVLink (H100 SXM, ~400 GB/s achieved bus bandwidth)', bytesPerS: 400e9 },
    { name: '100 Gb/s Ethernet (12.5 GB/s)', bytesPerS: 12.5e9 },
  ];
  const paper = links.map((l) => ({ ...l, gradientBytes: llada, ranks: 8, seconds: ringAllReduceSeconds(llada, 8, l.bytesPerS) }));
  const result = { date: new Date().toISOString(), command: `npm run bench -- parallel --reps ${reps} --steps ${steps}`, engine: reduce.engine, rows, allReduce: reduce.sizes, paper };
  mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
  writeFileSync(join(import.meta.dirname, 'results', 'parallel.json'), JSON.stringify(result, null, 2) + '\n');
  const f = (x, d = 0) => x.toFixed(d);
  console.log(`| step | parameters | 1 process x 2 threads | 2 processes x 1 thread | ratio | all-reduce per step |\n|---|---|---|---|---|---|`);
  for (const r of rows)
    console.log(`| ${r.name} | ${(r.parameters / 1e6).toFixed(2)}M | ${f(r.oneProcess.stepMs)} ms, ${f(r.oneProcess.tokensPerS)} tok/s | ${f(r.twoProcesses.stepMs)} ms, ${f(r.twoProcesses.tokensPerS)} tok/s | ${f(r.ratio, 2)} | ${f(r.twoProcesses.allReduceMsPerStep, 1)} ms (${f(r.gradientBytes / 2 ** 20, 1)} MiB of gradients) |`);
  console.log(`\nall-reduce alone (${reduce.engine}, 2 processes, one machine)\n| bytes | ms | GB/s (buffer / time) |\n|---|---|---|`);
  for (const s of reduce.sizes) console.log(`| ${f(s.bytes / 2 ** 20)} MiB | ${f(s.ms, 2)} | ${f(s.bytes / (s.ms / 1000) / 1e9, 2)} |`);
  console.log(`\non paper: LLaDA-8B's fp32 gradients (${f(llada / 1e9)} GB) in a ring all-reduce over 8 ranks\n| link | seconds per step |\n|---|---|`);
  for (const p of paper) console.log(`| ${p.name} | ${f(p.seconds, 2)} |`);
}
