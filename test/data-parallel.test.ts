import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { CollectiveError, cudaDevice, DiffpoTrainer, DiffusionLM, InvalidArgumentError, launchedLocalRank, launchedSize, SftTrainer, shardRange, SINGLE_PROCESS, type Collective } from 'diffpo';

import { copy4, TINY } from './helpers/copy-task.js';

const root = join(import.meta.dirname, '..');
const fixture = join(root, 'test', 'fixtures', 'data-parallel.mjs');
const dir = mkdtempSync(join(tmpdir(), 'diffpo-dp-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const fakeRank = (rank: number, size: number): Collective => ({ ...SINGLE_PROCESS, rank, size });

describe('sharding a batch across processes', () => {
  it('every item of the batch goes to exactly one process, contiguously, shares differing by at most one', () => {
    for (let size = 1; size <= 6; size++)
      for (let n = size; n <= 40; n++) {
        const ranges = Array.from({ length: size }, (_, r) => shardRange(n, fakeRank(r, size)));
        expect(ranges[0]!.start).toBe(0);
        expect(ranges.at(-1)!.end).toBe(n);
        ranges.forEach((r, i) => {
          if (i > 0) expect(r.start).toBe(ranges[i - 1]!.end);
          expect(r.end - r.start).toBeGreaterThanOrEqual(Math.floor(n / size));
          expect(r.end - r.start).toBeLessThanOrEqual(Math.ceil(n / size));
        });
      }
  });

  it('reads the job size from Open MPI, MPICH (Hydra) or PMIx launchers, and nothing else', () => {
    expect(launchedSize({ OMPI_COMM_WORLD_SIZE: '4' })).toBe(4);
    expect(launchedSize({ PMI_SIZE: '2' })).toBe(2);
    expect(launchedSize({ PMIX_SIZE: '3' })).toBe(3);
    expect(launchedSize({})).toBeNull();
    expect(launchedSize({ OMPI_COMM_WORLD_SIZE: 'two' })).toBeNull();
  });

  it('one process loads no MPI library: the addon runs without one', async () => {
    const model = DiffusionLM.create({ vocab_size: 16, d_model: 16, n_heads: 2, n_layers: 1, mlp_hidden_size: 32 }, { threads: 1 });
    await model.logits(new Int32Array([1, 2, 3]), { batch: 1, seqLen: 3 });
    model.dispose();
    expect(readFileSync('/proc/self/maps', 'utf8')).not.toMatch(/libmpi/);
  });

  it('a missing MPI library is a CollectiveError naming what was tried', () => {
    const script = "import('diffpo').then(({ worldFromEnvironment }) => { try { worldFromEnvironment() } catch (e) { console.log(e.constructor.name + ': ' + e.message) } })";
    const out = execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, DIFFPO_MPI: '1', DIFFPO_MPI_LIBRARY: '/nonexistent/libmpi.so.40' } });
    expect(out).toMatch(/^CollectiveError: no MPI library could be loaded .*\n\s+\/nonexistent\/libmpi\.so\.40: /);
    expect(CollectiveError.name).toBe('CollectiveError');
  });

  it('a global batch smaller than the job is an error naming both (every process needs a share)', () => {
    const model = DiffusionLM.create(TINY, { threads: 1 });
    expect(() => new SftTrainer(model, { task: copy4, batchSize: 2, world: fakeRank(0, 3) })).toThrow('batchSize (2) must be at least the number of processes (3)');
    expect(() => new DiffpoTrainer({ model, task: copy4, genLength: 5, promptsPerStep: 2, world: fakeRank(1, 4) })).toThrow('promptsPerStep (2) must be at least the number of processes (4): each process takes whole prompts');
    model.dispose();
  });

  it('DIFFPO_MPI other than 0 or 1 is an error naming the value', () => {
    const script = "import('diffpo').then(({ worldFromEnvironment }) => { try { worldFromEnvironment() } catch (e) { console.log(e.message) } })";
    const out = execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, DIFFPO_MPI: 'yes' } });
    expect(out.trim()).toBe('DIFFPO_MPI must be 0 or 1, got "yes"');
  });
});

// The jobs below need mpirun (CI installs Open MPI and MPICH; DIFFPO_REQUIRE_MPI=1 there makes their absence a failure).
const mpirun = spawnSync('mpirun', ['--version'], { encoding: 'utf8' }).status === 0;
const mpich = spawnSync('mpirun.mpich', ['--version'], { encoding: 'utf8' }).status === 0;
if ((!mpirun || !mpich) && process.env.DIFFPO_REQUIRE_MPI === '1') throw new Error('DIFFPO_REQUIRE_MPI=1 but mpirun or mpirun.mpich is not on PATH (apt-get install openmpi-bin libopenmpi-dev mpich)');
const MPIRUN = ['-np', '2', '--allow-run-as-root', '--oversubscribe'];

function run(ranks: 1 | 2, args: string[]): { status: number | null; output: string; seconds: number } {
  const t0 = performance.now();
  const [cmd, argv] = ranks === 1 ? [process.execPath, [fixture, ...args]] : ['mpirun', [...MPIRUN, process.execPath, fixture, ...args]];
  const r = spawnSync(cmd, argv, { encoding: 'utf8', timeout: 120_000, env: { ...process.env, DIFFPO_MPI: undefined } });
  return { status: r.status, output: r.stdout + r.stderr, seconds: (performance.now() - t0) / 1000 };
}

function trained(ranks: 1 | 2, mode: string, steps: number, out = join(dir, `${mode}-${ranks}-${steps}`), last?: string) {
  const r = run(ranks, [mode, out, String(steps), ...(last ? [last] : [])]);
  expect(r.status, r.output).toBe(0);
  const weights = new Float32Array(readFileSync(join(out, 'weights.f32')).buffer.slice(0));
  const steps_ = JSON.parse(readFileSync(join(out, 'steps.json'), 'utf8')) as { step: number; loss: number; prompts?: string[]; rewards?: number[]; meanNfe?: number; resampledGroups?: number }[];
  const ranksDecoded = Array.from({ length: ranks }, (_, k) => JSON.parse(readFileSync(join(out, `rank-${k}.json`), 'utf8')) as { size: number; decoded: string[][] });
  return { out, weights, steps: steps_, ranksDecoded };
}

/** max |a - b| / max |a| over all weights */
function relativeDifference(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let d = 0,
    m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    m = Math.max(m, Math.abs(a[i]!));
  }
  return d / m;
}

describe.skipIf(!mpirun)('mpirun -np 2 equals one process with the same global batch and seed', () => {
  it('SFT, 3 steps of a 7-sequence batch (4 + 3 per process): weights within 1e-5, losses within 1e-6', () => {
    const one = trained(1, 'sft', 3),
      two = trained(2, 'sft', 3);
    expect(relativeDifference(one.weights, two.weights)).toBeLessThan(1e-5);
    two.steps.forEach((s, i) => expect(Math.abs(s.loss - one.steps[i]!.loss)).toBeLessThan(1e-6 * Math.abs(one.steps[i]!.loss)));
    // not bit-exact: each process sums its sequences' gradients, and the all-reduce adds the two sums
    expect(two.ranksDecoded.map((r) => r.size)).toEqual([2, 2]);
  });

  for (const mode of ['diffpo', 'learned', 'resample'] as const)
    it(`DiFFPO${{ diffpo: '', learned: ' with a learned sampler head', resample: ' resampling flat groups' }[mode]}, 3 steps: the same rollouts and rewards, weights within 1e-5`, () => {
      const one = trained(1, mode, 3),
        two = trained(2, mode, 3);
      if (mode === 'resample') {
        // 4, 5 and 4 groups redrawn in steps 1-3 (of 4 prompts a step, in up to two rounds: a round
        // of 1 prompt leaves rank 0 nothing to decode, and it still joins the gather)
        expect(one.steps.map((s) => s.resampledGroups)).toEqual([4, 5, 4]);
        expect(two.steps.map((s) => s.resampledGroups)).toEqual([4, 5, 4]);
      }
      expect(two.steps.map((s) => s.rewards)).toEqual(one.steps.map((s) => s.rewards));
      expect(two.steps.map((s) => s.meanNfe)).toEqual(one.steps.map((s) => s.meanNfe));
      expect(relativeDifference(one.weights, two.weights)).toBeLessThan(1e-5);
      if (mode === 'learned') {
        // the head's update is computed from gathered features and rewards, alike in every process; each
        // process computes its prompts' features in a forward of its own share (another batch shape
        // than one process's), so they agree as the weights do, to rounding
        const [h1, h2] = [one, two].map((t) => JSON.parse(readFileSync(join(t.out, 'head.json'), 'utf8')) as { weight: number[]; bias: number[] });
        for (const k of ['weight', 'bias'] as const) h2[k].forEach((w, i) => expect(Math.abs(w - h1[k][i]!), `${k}[${i}]`).toBeLessThan(1e-6 * Math.max(...h1[k].map(Math.abs))));
      }
    });

  it('every prompt of the global batch is decoded exactly once per step, each whole group by one process', () => {
    const two = trained(2, 'diffpo', 3, join(dir, 'sharding'));
    for (const [s, step] of two.steps.entries()) {
      const perRank = two.ranksDecoded.map((r) => r.decoded[s]!);
      expect(perRank.map((p) => p.length)).toEqual([3, 6]); // 3 prompts x G=3: 1 and 2 prompts
      const decoded = perRank.flat();
      expect(decoded.length).toBe(step.prompts!.length);
      // the union over processes, in rank order, is the batch in order: nothing twice, nothing missed
      expect(decoded).toEqual(step.prompts);
      for (const p of perRank) for (let g = 0; g < p.length; g += 3) expect(new Set(p.slice(g, g + 3)).size).toBe(1);
    }
  });

  it('the CLI: mpirun -np 2 diffpo train --task sudoku4 trains the shipped base to the weights one process gets', async () => {
    const cli = join(root, 'dist', 'esm', 'app', 'cli.js');
    const args = (out: string) => [cli, 'train', '--task', 'sudoku4', '--steps', '2', '--limit', '16', '--out', out];
    const [a, b] = [join(dir, 'cli-1'), join(dir, 'cli-2')];
    const one = spawnSync(process.execPath, args(a), { encoding: 'utf8', env: { ...process.env, DIFFPO_MPI: undefined } });
    expect(one.status, one.stderr).toBe(0);
    const two = spawnSync('mpirun', [...MPIRUN, process.execPath, ...args(b)], { encoding: 'utf8', env: { ...process.env, DIFFPO_MPI: undefined } });
    expect(two.status, two.stderr).toBe(0);
    // rank 0 alone speaks: one table, one report line
    expect(two.stdout.match(/^report: /gm)).toHaveLength(1);
    const [m1, m2] = await Promise.all([DiffusionLM.fromPretrained(a), DiffusionLM.fromPretrained(b)]);
    const flat = (m: DiffusionLM) => Float32Array.from([...m.parameters().values()].flatMap((p) => Array.from(p)));
    expect(relativeDifference(flat(m1), flat(m2))).toBeLessThan(1e-5);
    const table = (out: string) => out.slice(out.indexOf('| model'), out.indexOf('report:'));
    expect(table(two.stdout)).toBe(table(one.stdout));
    m1.dispose();
    m2.dispose();
  });

  it.skipIf(!mpich)("MPICH's ABI (integer handles, Hydra's launcher) trains to the bits Open MPI's does", () => {
    const openmpi = trained(2, 'diffpo', 3, join(dir, 'abi-openmpi'));
    const out = join(dir, 'abi-mpich');
    const r = spawnSync('mpirun.mpich', ['-np', '2', process.execPath, fixture, 'diffpo', out, '3'], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, DIFFPO_MPI: undefined } });
    expect(r.status, r.stderr).toBe(0);
    const rank1 = JSON.parse(readFileSync(join(out, 'rank-1.json'), 'utf8'));
    expect(rank1.size).toBe(2);
    // UCX's malloc hooks crashed Node about once in 25 MPICH launches; loading MPI turns them off
    expect(rank1.ucxMallocHooks).toBe('no');
    const weights = new Float32Array(readFileSync(join(out, 'weights.f32')).buffer.slice(0));
    expect(weights.filter((w, i) => w !== openmpi.weights[i]).length).toBe(0);
  });

  it('a rank that throws stops the whole job within seconds, with its message', () => {
    const r = run(2, ['throw', join(dir, 'throw'), '50']);
    expect(r.status).not.toBe(0);
    expect(r.output).toContain('rank 1 of 2: Error: rank 1 fails on purpose at step 2');
    expect(r.seconds).toBeLessThan(30);
  });

  it('a resumed 2-process run equals the uninterrupted 2-process run, bit for bit', () => {
    for (const mode of ['sft', 'diffpo'] as const) {
      const whole = trained(2, mode, 4);
      const out = join(dir, `${mode}-resumed`);
      expect(run(2, [mode, out, '4', '2']).status).toBe(0); // stopped after step 2's checkpoint
      const resumed = trained(2, mode, 4, out, 'resume');
      // counted, not diffed: a diff of 90k floats takes vitest minutes to print
      expect(resumed.weights.filter((w, i) => w !== whole.weights[i]).length, `${mode}: weights that differ`).toBe(0);
    }
  });

  it('a 2-process checkpoint resumes in one process (the state is whole in every process), near the 2-process run', () => {
    const whole = trained(2, 'diffpo', 4, join(dir, 'diffpo-whole-for-1'));
    const out = join(dir, 'diffpo-2-then-1');
    expect(run(2, ['diffpo', out, '4', '2']).status).toBe(0);
    const resumed = trained(1, 'diffpo', 4, out, 'resume');
    expect(relativeDifference(whole.weights, resumed.weights)).toBeLessThan(1e-5);
  });
});

describe('a GPU per process', () => {
  it("each process of a job takes its local rank's CUDA device (modulo the devices), unless one is asked for", () => {
    expect(launchedLocalRank({ OMPI_COMM_WORLD_LOCAL_RANK: '3' })).toBe(3);
    expect(launchedLocalRank({ MPI_LOCALRANKID: '1' })).toBe(1); // MPICH's Hydra
    expect(launchedLocalRank({})).toBeNull();
    expect(cudaDevice(undefined, 8, { OMPI_COMM_WORLD_LOCAL_RANK: '5' })).toBe(5);
    expect(cudaDevice(undefined, 4, { OMPI_COMM_WORLD_LOCAL_RANK: '5' })).toBe(1);
    expect(cudaDevice(undefined, 2, {})).toBe(0);
    expect(cudaDevice(1, 2, { OMPI_COMM_WORLD_LOCAL_RANK: '0' })).toBe(1);
    expect(() => cudaDevice(2, 2, {})).toThrow(InvalidArgumentError);
    expect(() => cudaDevice(2, 2, {})).toThrow(/device must be an integer in \[0, 2\).*got 2/);
  });

  it('with LoRA only the adapters are all-reduced: the flat gradient a data-parallel step sums is theirs', async () => {
    const m = DiffusionLM.create(TINY, { seed: 1 });
    await m.addLora({ rank: 2 });
    expect(m.flatGradients().length).toBe(m.numTrainable);
    expect(m.numTrainable).toBeLessThan(m.numParameters / 10);
    m.dispose();
  });
});

