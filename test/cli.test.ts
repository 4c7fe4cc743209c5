import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { DiffusionLM, paretoCompare, ThresholdHead, type ParetoComparison } from 'diffpo';

const cli = (...args: string[]) => spawnSync(process.execPath, ['dist/esm/app/cli.js', ...args], { encoding: 'utf8' });

describe('CLI', () => {
  it('init writes a checkpoint and logits prints the model logits as JSON', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'diffpo-cli-')), 'tiny');
    const init = cli('init', '--out', dir, '--config', 'tiny', '--seed', '3');
    expect(init.status, init.stderr).toBe(0);
    const out = cli('logits', '--model', dir, '--tokens', '1,2,3;4,5,6');
    expect(out.status, out.stderr).toBe(0);
    const { logits } = JSON.parse(out.stdout) as { logits: number[][][] };
    expect(logits.length).toBe(2);
    expect(logits[0]!.length).toBe(3);
    const model = await DiffusionLM.fromPretrained(dir);
    const want = await model.logits(Int32Array.from([1, 2, 3, 4, 5, 6]), { batch: 2, seqLen: 3 });
    expect(Float32Array.from(logits.flat(2))).toEqual(want);
    model.dispose();
  });

  it('generate prints the tokens, NFE and per-step trace of model.generate as JSON', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'diffpo-cli-')), 'gen');
    expect(cli('init', '--out', dir, '--config', 'tiny', '--seed', '4').status).toBe(0);
    const out = cli('generate', '--model', dir, '--prompt', '1,2,3;4,5', '--gen-length', '8', '--block-length', '4', '--steps', '4', '--json');
    expect(out.status, out.stderr).toBe(0);
    const got = JSON.parse(out.stdout) as { tokens: number[][]; nfe: number[]; steps: { step: number; unmasked: { sequence: number; position: number; token: number }[] }[] };
    const model = await DiffusionLM.fromPretrained(dir);
    const want = await model.generate([Int32Array.from([1, 2, 3]), Int32Array.from([4, 5])], { genLength: 8, blockLength: 4, strategy: { kind: 'steps', steps: 4 } });
    expect(got.tokens.flat()).toEqual(Array.from(want.tokens));
    expect(got.nfe).toEqual([4, 4]);
    expect(got.steps.map((s) => s.step)).toEqual([1, 2, 3, 4]);
    for (const s of got.steps) for (const u of s.unmasked) expect(want.decodeStep[u.sequence * 8 + u.position]).toBe(s.step);
    model.dispose();
    const dual = cli('generate', '--model', dir, '--prompt', '1,2,3;4,5', '--gen-length', '8', '--block-length', '4', '--threshold', '0.5', '--cache', 'dual', '--json');
    expect(dual.status, dual.stderr).toBe(0);
    expect((JSON.parse(dual.stdout) as { tokens: number[][] }).tokens.length).toBe(2);
    const badCache = cli('generate', '--model', dir, '--prompt', '1', '--gen-length', '4', '--threshold', '0.5', '--cache', 'full');
    expect(badCache.status).toBe(1);
    expect(badCache.stderr).toMatch(/--cache: 'full' is not one of none, prefix, dual/);
    const none = cli('generate', '--model', dir, '--prompt', '1', '--gen-length', '4');
    expect(none.status).toBe(1);
    expect(none.stderr).toMatch(/exactly one of --steps, --threshold, --factor, --gamma/);
  });

  it('sft trains and checkpoints, eval reports accuracy, reward and NFE on the test set, resume continues', () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'diffpo-cli-')), 'sft');
    const sft = cli('sft', '--task', 'sudoku4', '--out', dir, '--steps', '6', '--batch-size', '8', '--limit', '16');
    expect(sft.status, sft.stderr).toBe(0);
    expect(sft.stdout).toMatch(/after 6 steps \(\d+ s, test accuracy [\d.]+ at NFE [\d.]+, validation accuracy [\d.]+ at NFE [\d.]+; result\.json\)/);
    // the run's record: the test set scored once (all of it), the validation set beside it, how it was made
    const record = JSON.parse(readFileSync(join(dir, 'result.json'), 'utf8'));
    expect(record).toMatchObject({ task: 'sudoku4', method: 'sft', steps: 6, options: { batchSize: 8 } });
    expect([record.test.items, record.validation.items]).toEqual([16, 16]);
    expect(record.command).toBe(`diffpo sft --task sudoku4 --out ${dir} --steps 6 --batch-size 8 --limit 16`);
    const ev = cli('eval', '--model', dir, '--task', 'sudoku4', '--limit', '8', '--json');
    expect(ev.status, ev.stderr).toBe(0);
    const r = JSON.parse(ev.stdout) as { items: number; accuracy: number; meanReward: number; meanNfe: number };
    expect(r.items).toBe(8);
    expect(r.meanNfe).toBeGreaterThanOrEqual(1);
    expect(r.meanNfe).toBeLessThanOrEqual(17);
    expect(r.meanReward >= 0 && r.meanReward <= 1).toBe(true);
    const more = cli('sft', '--task', 'sudoku4', '--out', dir, '--steps', '8', '--batch-size', '8', '--resume', '--limit', '16');
    expect(more.status, more.stderr).toBe(0);
    expect(more.stdout).toMatch(/after 8 steps/);
  });

  it('train runs RL from the shipped base and prints a before/after table and the report path', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'diffpo-cli-')), 'rl');
    const r = cli('train', '--task', 'sudoku4', '--steps', '2', '--limit', '16', '--out', out, '--method', 'd1', '--eval-every', '1', '--resample-flat-groups', '1');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/\| sudoku4-base \| [\d.]+ \| [\d.]+ \| [\d.]+ \|/);
    expect(r.stdout).toMatch(/\| after 2 d1 steps \|/);
    expect(r.stdout).toContain(`report: ${join(out, 'report.html')}`);
    const html = readFileSync(join(out, 'report.html'), 'utf8');
    expect(html.match(/<svg/g)!.length).toBe(3); // the frontier, the per-step curves, the KL
    expect(html.match(/<polyline/g)!.length).toBe(4 + 6 + 1); // before/after and their hulls; reward, accuracy, NFE, flat groups as drawn and trained on, validation accuracy (--eval-every); KL
    for (const label of ['before RL: hull', 'mean reward', 'accuracy', 'mean NFE / max', 'flat groups, drawn', 'flat groups, trained', 'validation accuracy', 'mean k3 KL']) expect(html).toContain(`>${label}<`);
    expect(html).toContain('<a href="metrics.jsonl">');
    const metrics = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    for (const m of metrics) expect(m.zeroVariance >= 0 && m.zeroVariance <= 1).toBe(true);
    // --resample-flat-groups 1: flat groups were redrawn, and a redraw never adds a flat group
    expect(metrics.some((m) => m.resampledGroups > 0)).toBe(true);
    for (const m of metrics) expect(m.zeroVarianceTrained).toBeLessThanOrEqual(m.zeroVariance);
    expect(readFileSync(join(out, 'report.md'), 'utf8')).toMatch(/\| before RL \| one token per step \| [\d.]+ \| [\d.]+ \| 17.00 \|/);
    expect(readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').length).toBe(2);
    // --eval-every 1: each step's line has the validation accuracy at the run's threshold; after the
    // last step it is the final validation sweep's point at that threshold (same model, items, decoding)
    const run = JSON.parse(readFileSync(join(out, 'result.json'), 'utf8'));
    const final = run.validation.after.find((p: { strategy: { threshold?: number } }) => p.strategy.threshold === 0.9);
    expect(metrics[0].validationAccuracy).toBeGreaterThanOrEqual(0);
    expect(metrics[0].testAccuracy).toBeUndefined(); // the test set is scored once, after
    expect([metrics[1].validationAccuracy, metrics[1].validationNfe]).toEqual([final.accuracy, final.meanNfe]);
    expect([run.testItems, run.validation.items, run.before.length, run.validation.before.length]).toEqual([16, 16, 5, 5]);
    expect(run.command).toContain('diffpo train --task sudoku4 --steps 2');
    expect(run.options).toMatchObject({ method: 'd1', resampleFlatGroups: 1, sampler: 'fixed' });
    expect(cli('train', '--task', 'sudoku4', '--eval-every', '2.5').stderr).toMatch(/--eval-every: '2.5' is not an integer/);
    const joint = cli('train', '--task', 'sudoku4', '--steps', '2', '--limit', '8', '--out', out + '-joint', '--sampler', 'learned', '--eval-every', '2');
    expect(joint.status, joint.stderr).toBe(0);
    expect(joint.stdout).toMatch(/\| after 2 diffpo steps \(learned sampler\) \|/);
    // the defaults: the measured design (confidence features, loose or 0.9), calibrated before its first update
    const head = await ThresholdHead.load(out + '-joint');
    expect([head.grid, head.features, head.calibrated]).toEqual([[0.5, 0.9], 'confidence', true]);
    // the report counts each test prompt's learned threshold by difficulty (the external set: 8 empty cells each)
    expect(readFileSync(join(out + '-joint', 'report.md'), 'utf8')).toMatch(/\| empty cells \| prompts \| at 0.5 \| at 0.9 \|\n\|---\|---\|---\|---\|\n\| 8 \| 8 \| \d \| \d \|/);
    const result = JSON.parse(readFileSync(join(out + '-joint', 'result.json'), 'utf8'));
    expect(result.choices.rows[0].counts.reduce((a: number, n: number) => a + n, 0)).toBe(8);
    // with a learned sampler the validation curve is its learned point's
    const jointMetrics = readFileSync(join(out + '-joint', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect([jointMetrics[1].validationAccuracy, jointMetrics[1].validationNfe]).toEqual([result.validation.learned.accuracy, result.validation.learned.meanNfe]);
    expect(readFileSync(join(out + '-joint', 'report.md'), 'utf8')).toMatch(/\| after RL \| learned threshold \|/);
    expect(readFileSync(join(out + '-joint', 'pareto.svg'), 'utf8')).toContain('after RL, learned threshold: accuracy');
  });

  it('train --lora-rank trains adapters on the frozen base: adapter-folder checkpoints that resume (dropout masks too), eval and merge', () => {
    const out = join(mkdtempSync(join(tmpdir(), 'diffpo-cli-')), 'lora');
    const flags = ['--task', 'sudoku4', '--limit', '8', '--sweep', '0.9', '--lora-rank', '4', '--lora-targets', 'q_proj,v_proj,ff_out', '--lr', '1e-2', '--checkpointing', 'layer', '--lora-dropout', '0.1'];
    const args = ['train', ...flags, '--out', out];
    const r = cli(...args, '--steps', '1');
    expect(r.status, r.stderr).toBe(0);
    // the run folder is a PEFT adapter folder naming the shipped base; no weights of the base are copied
    const config = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
    expect(config).toMatchObject({ peft_type: 'LORA', r: 4, lora_alpha: 2, lora_dropout: 0.1, target_modules: ['q_proj', 'v_proj', 'ff_out'] });
    expect(config.base_model_name_or_path).toMatch(/models\/sudoku4-base$/);
    expect(existsSync(join(out, 'model.safetensors'))).toBe(false);
    expect(existsSync(join(out, 'reference'))).toBe(false); // the reference policy is the base: adapters off
    expect(JSON.parse(readFileSync(join(out, 'result.json'), 'utf8')).options.lora).toEqual({ rank: 4, alpha: 2, dropout: 0.1, targets: ['q_proj', 'v_proj', 'ff_out'] });
    const more = cli(...args, '--steps', '2', '--resume');
    expect(more.status, more.stderr).toBe(0);
    expect(more.stdout).toMatch(/\| after 2 diffpo steps \|/);
    // the resumed run's adapters equal an uninterrupted run's, bit for bit (each step seeds its dropout masks)
    const whole = cli('train', ...flags, '--out', out + '-whole', '--steps', '2');
    expect(whole.status, whole.stderr).toBe(0);
    expect(readFileSync(join(out, 'adapter_model.safetensors')).equals(readFileSync(join(out + '-whole', 'adapter_model.safetensors')))).toBe(true);
    const evalRun = cli('eval', '--model', out, '--task', 'sudoku4', '--limit', '8', '--json');
    expect(evalRun.status, evalRun.stderr).toBe(0);
    const merged = join(out, '..', 'merged');
    const m = cli('merge', '--model', out, '--out', merged, '--dtype', 'f32');
    expect(m.status, m.stderr).toBe(0);
    const evalMerged = cli('eval', '--model', merged, '--task', 'sudoku4', '--limit', '8', '--json');
    expect(JSON.parse(evalMerged.stdout).accuracy).toBe(JSON.parse(evalRun.stdout).accuracy);
    expect(cli('merge', '--model', merged, '--out', merged + '2').stderr).toMatch(/is not an adapter folder/);
    expect(cli('train', '--task', 'sudoku4', '--lora-rank', '4', '--lora-targets', 'q_proj,gate_proj', '--out', out + 'x').stderr).toMatch(/unknown LoRA target 'gate_proj'/);
  });

  it('train --weight-average evaluates the moving average of the weights and leaves it as a model folder', () => {
    const out = join(mkdtempSync(join(tmpdir(), 'diffpo-cli-')), 'avg');
    const r = cli('train', '--task', 'sudoku4', '--steps', '2', '--limit', '8', '--out', out, '--eval-every', '1', '--weight-average', '0.5', '--lr', '1e-3', '--sweep', '0.5');
    expect(r.status, r.stderr).toBe(0);
    const metrics = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    for (const m of metrics) expect(m.validationAccuracyAveraged >= 0 && m.validationAccuracy >= 0).toBe(true);
    // after the last step: the sweep is the average's, lastWeights the last step's own weights (the same evaluations as the step's)
    const result = JSON.parse(readFileSync(join(out, 'result.json'), 'utf8'));
    // --sweep 0.5: the sweeps hold that threshold and the run's own (0.9)
    for (const points of [result.before, result.after]) expect(points.map((p: { strategy: { threshold?: number } }) => p.strategy.threshold)).toEqual([0.5, 0.9]);
    const final = result.validation.after.find((p: { strategy: { threshold?: number } }) => p.strategy.threshold === 0.9);
    expect([final.accuracy, final.meanNfe]).toEqual([metrics[1].validationAccuracyAveraged, metrics[1].validationNfeAveraged]);
    expect([result.validation.lastWeights.accuracy, result.validation.lastWeights.meanNfe]).toEqual([metrics[1].validationAccuracy, metrics[1].validationNfe]);
    expect(result.lastWeights.accuracy).toBeGreaterThanOrEqual(0); // the same on the test set
    expect(r.stdout).toMatch(/\| after 2 diffpo steps \(weight average\) \| [\d.]+ \| [\d.]+ \| [\d.]+ \|\n\| after 2 diffpo steps \(last step's weights\) \| [\d.]+ \|/);
    const ev = cli('eval', '--model', join(out, 'average'), '--task', 'sudoku4', '--limit', '8', '--json');
    expect(ev.status, ev.stderr).toBe(0);
    expect(JSON.parse(ev.stdout).accuracy).toBe(result.after.find((p: { strategy: { threshold?: number } }) => p.strategy.threshold === 0.9).accuracy);
    const evv = cli('eval', '--model', join(out, 'average'), '--task', 'sudoku4', '--split', 'validation', '--limit', '8', '--json');
    expect(JSON.parse(evv.stdout).accuracy).toBe(final.accuracy);
    expect(readFileSync(join(out, 'report.html'), 'utf8')).toContain('>validation accuracy, averaged<');
  });

  it('eval --pareto --baseline: every point against the baseline\'s hull, on the test or the validation split', () => {
    const svg = join(mkdtempSync(join(tmpdir(), 'diffpo-cli-')), 'p.svg');
    const args = ['eval', '--model', 'models/sudoku4-diffpo', '--task', 'sudoku4', '--pareto', '--thresholds', '0.5,0.9', '--baseline', 'models/sudoku4-base', '--limit', '16', '--out', svg];
    const r = cli(...args, '--json');
    expect(r.status, r.stderr).toBe(0);
    const got = JSON.parse(r.stdout);
    expect(got.points.map((p: { label: string }) => p.label)).toEqual(['threshold 0.5', 'threshold 0.9']);
    expect(got.baseline.comparisons.map((c: ParetoComparison) => [c.accuracyGain, c.nfeSaved])).toEqual(paretoCompare(got.baseline.points, got.points).map((c) => [c.accuracyGain, c.nfeSaved]));
    expect(readFileSync(svg, 'utf8')).toContain('baseline models/sudoku4-base: hull');
    const text = cli(...args);
    expect(text.stdout).toMatch(/^16 items\n\n\| decoding \| accuracy \| mean NFE \| on the front \| baseline: accuracy \|/);
    // the validation split (its items: test/validation-sets.test.ts), the same way
    const val = JSON.parse(cli(...args, '--json', '--split', 'validation').stdout);
    expect([val.items, val.points.length, val.baseline.comparisons.length]).toEqual([16, 2, 2]);
  });

  it('bad arguments exit 1 with a message naming the problem', () => {
    const a = cli('logits', '--model', '/nonexistent', '--tokens', '1,2');
    expect(a.status).toBe(1);
    expect(a.stderr).toMatch(/config\.json.*ERR_CHECKPOINT/);
    const b = cli('logits', '--model', '/tmp', '--tokens', '1,x');
    expect(b.status).toBe(1);
    expect(b.stderr).toMatch(/'x' is not an integer/);
    const c = cli('frobnicate');
    expect(c.status).toBe(1);
    expect(c.stderr).toMatch(/unknown command 'frobnicate'/);
    expect(cli('--help').stdout).toMatch(/usage: diffpo/);
    const e = cli('train', '--task', 'sudoku4', '--steps', '1', '--limit', '4', '--out', join(mkdtempSync(join(tmpdir(), 'diffpo-cli-')), 'r'), '--group-size', 'x');
    expect(e.status).toBe(1);
    expect(e.stderr).toMatch(/--group-size: 'x' is not a number/);
    // a failed run leaves no empty folder behind; --data reads the test set from a file
    const out = join(mkdtempSync(join(tmpdir(), 'diffpo-cli-')), 'r');
    const f = cli('train', '--task', 'sudoku4', '--steps', '1', '--from', '/nonexistent', '--out', out);
    expect(f.status).toBe(1);
    expect(f.stderr).toMatch(/nonexistent.*ERR_CHECKPOINT/);
    expect(existsSync(out)).toBe(false);
    const g = cli('train', '--task', 'sudoku4', '--steps', '1', '--data', '/nonexistent.csv', '--out', out);
    expect(g.status).toBe(1);
    expect(g.stderr).toMatch(/cannot read \/nonexistent.csv.*ERR_INVALID_ARGUMENT/);
    expect(existsSync(out)).toBe(false);
    const budgets = cli('eval', '--model', 'models/sudoku4-base', '--task', 'sudoku4', '--limit', '8', '--budgets', '1,17', '--threshold', '1.01', '--json');
    expect(budgets.status, budgets.stderr).toBe(0);
    expect(JSON.parse(budgets.stdout).points.map((p: { budget: number; meanNfe: number }) => [p.budget, p.meanNfe])).toEqual([[1, 1], [17, 17]]);
    expect(cli('eval', '--model', 'models/sudoku4-base', '--task', 'sudoku4', '--learned', '--threshold', '0.9').stderr).toMatch(/--learned and --threshold both choose the decoding/);
    const sweep = cli('train', '--task', 'sudoku4', '--steps', '1', '--sweep', '0.9,0', '--out', out);
    expect(sweep.stderr).toMatch(/sweep thresholds must be positive numbers \(above 1: one token per step\), got 0 \(ERR_INVALID_ARGUMENT\)/);
    expect(existsSync(out)).toBe(false);
    const rl = cli('train', '--rollout-thresholds', '0.9,x', '--task', 'sudoku4');
    expect(rl.stderr).toMatch(/--rollout-thresholds: '0.9,x' is not a comma-separated list of numbers/);
    const d = cli('init', '--out', join(mkdtempSync(join(tmpdir(), 'diffpo-cli-')), 'm'), '--backend', 'tpu');
    expect(d.status).toBe(1);
    expect(d.stderr).toMatch(/backend must be 'auto', 'cpu', 'cuda', 'cuda-fp32' or 'reference', got tpu \(ERR_INVALID_ARGUMENT\)/);
    // a negative number is a flag's value: `--threshold -1` is `--threshold=-1`
    const [spaced, joined] = [['--threshold', '-1'], ['--threshold=-1']].map((args) => cli('eval', '--model', 'models/sudoku4-base', '--task', 'sudoku4', '--limit', '2', '--json', ...args));
    expect(spaced!.status, spaced!.stderr).toBe(0);
    const result = (r: typeof spaced) => JSON.parse(r!.stdout) as { strategy: unknown; accuracy: number; meanNfe: number };
    expect(result(spaced).strategy).toEqual({ kind: 'threshold', threshold: -1 });
    expect([result(spaced).accuracy, result(spaced).meanNfe]).toEqual([result(joined).accuracy, result(joined).meanNfe]);
    // every error is one line with a code, file-system failures included; no stack trace
    const file = join(mkdtempSync(join(tmpdir(), 'diffpo-cli-')), 'a-file');
    writeFileSync(file, 'x');
    for (const [args, code] of [
      [['sft', '--task', 'sudoku4', '--out', join(file, 'x'), '--steps', '1'], 'ERR_CHECKPOINT'],
      [['frobnicate'], 'ERR_INVALID_ARGUMENT'],
      [['eval', '--model', file, '--task', 'sudoku4'], 'ERR_CHECKPOINT'],
      [['init', '--out', join(file, 'x')], 'ERR_CHECKPOINT'],
    ] as const) {
      const r = cli(...args);
      expect(r.status, args.join(' ')).toBe(1);
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stderr).toMatch(new RegExp(`^diffpo: .*\\(${code}\\)\\n$`));
    }
  });

  it('a config of a million layers is refused from arithmetic, in milliseconds and bounded memory (under a 2 GB address-space limit too)', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'diffpo-cli-')), 'm');
    expect(cli('init', '--out', dir, '--config', 'tiny').status).toBe(0);
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, n_layers: 1_000_000 }));
    const t0 = performance.now();
    const r = spawnSync('prlimit', ['--as=2000000000', process.execPath, 'dist/esm/app/cli.js', 'logits', '--model', dir, '--tokens', '1,2'], { encoding: 'utf8' });
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/this config has 977\.5 GiB of float32 parameters, more than this machine's .* \(ERR_CONFIG\)/);
    // one that would fit in memory but names blocks the files lack fails on the first missing one
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, n_layers: 1000 }));
    const s = cli('logits', '--model', dir, '--tokens', '1,2');
    expect(s.stderr).toMatch(/missing tensor 'model\.transformer\.blocks\.4\.attn_norm\.weight'.*ERR_CHECKPOINT/);
    // created, not loaded: the arithmetic alone refuses it
    const t1 = performance.now();
    expect(() => DiffusionLM.create({ ...config, n_layers: 1_000_000 })).toThrow(/more than this machine's/);
    expect(performance.now() - t1).toBeLessThan(100);
  });

  it('each command takes its own flags, generated from the trainers\' documented defaults', async () => {
    const { DIFFPO_DEFAULTS, SAMPLER_DEFAULTS, SFT_DEFAULTS } = await import('diffpo');
    // --help per command: every trainer option is a flag with the trainer's default (or the command's own, explained)
    const train = cli('train', '--help');
    expect(train.status).toBe(0);
    expect(train.stdout).toMatch(/--prompts-per-step N \(default 8\)\n\s+prompts per step/);
    expect(train.stdout).toMatch(/--method diffpo\|d1\|trace \(default diffpo\)/);
    expect(train.stdout).toMatch(/--rollout-temperature N \(default 1\)/);
    expect(train.stdout).toMatch(/--checkpoint-every N \(default 25\)\n.*; here 25: /);
    const flag = (key: string, value: unknown) => `--${value === true ? 'no-' : ''}${key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())}`;
    for (const [key, spec] of Object.entries(DIFFPO_DEFAULTS).filter(([k]) => k !== 'betas' && k !== 'temperature')) expect(train.stdout, key).toMatch(new RegExp(`${flag(key, spec.default)}[ \\n]`));
    expect(train.stdout).toMatch(/--no-drop-flat-groups\n\s+turns off: leave groups/);
    // the learned sampler's options too, under --lambda and --head-* (one documented default each, as the library's)
    for (const [key, spec] of Object.entries(SAMPLER_DEFAULTS)) expect(train.stdout, key).toMatch(new RegExp(`--${key === 'lambda' ? 'lambda' : `head-${key}`} \\S+ \\(default ${String(spec.default)}\\)`));
    const sft = cli('sft', '--help');
    for (const [key, spec] of Object.entries(SFT_DEFAULTS).filter(([k]) => k !== 'betas')) expect(sft.stdout, key).toMatch(new RegExp(`${flag(key, spec.default)}[ \\n]`));
    expect(sft.stdout).toMatch(/--batch-size N \(default 32\)/);
    // a flag of another command, an unknown flag, a bad number: errors naming the flag, never a stack trace
    const wrong = cli('init', '--out', '/tmp/x', '--lambda', '7');
    expect(wrong.status).toBe(1);
    expect(wrong.stderr).toBe("diffpo: init: unknown flag --lambda (see diffpo init --help) (ERR_INVALID_ARGUMENT)\n");
    const steps = cli('generate', '--model', '/tmp', '--prompt', '1', '--gen-length', '4', '--steps', 'abc');
    expect(steps.stderr).toMatch(/--steps: 'abc' is not a number/);
    const half = cli('generate', '--model', '/tmp', '--prompt', '1', '--gen-length', '4', '--steps', '2.5');
    expect(half.stderr).toMatch(/--steps: '2.5' is not an integer/);
    expect(cli('eval', '--lambda', '2').stderr).toMatch(/eval: unknown flag --lambda/);
    const budget = cli('eval', '--model', 'models/sudoku4-base', '--task', 'sudoku4', '--limit', '8', '--threshold', '1.01', '--max-nfe', '2', '--json');
    expect(budget.status, budget.stderr).toBe(0);
    expect(JSON.parse(budget.stdout).meanNfe).toBe(2); // --max-nfe is applied, not dropped
    expect(cli('--version').stdout).toMatch(/^diffpo \d+\.\d+\.\d+\n$/);
    // flags parse to the trainer's option keys; an option on by default is turned off by --no-<name>
    const { flagsFromSpecs, parseFlags } = await import('../dist/esm/app/cli-flags.js');
    const flags = flagsFromSpecs(DIFFPO_DEFAULTS);
    expect(parseFlags('train', flags, ['--no-drop-flat-groups', '--group-size', '4'])).toMatchObject({ dropFlatGroups: false, groupSize: 4, beta: 0.04 });
    expect(parseFlags('train', flags, []).dropFlatGroups).toBeUndefined(); // the trainer's default applies
  });

  it("train takes each task's recipe where no flag is given, and a given flag over the recipe", async () => {
    const { DIFFPO_DEFAULTS } = await import('diffpo');
    const { flagsFromSpecs, parseFlags } = await import('../dist/esm/app/cli-flags.js');
    const { recipeOptions } = await import('../dist/esm/app/rl-run.js');
    const flags = [
      ...flagsFromSpecs(DIFFPO_DEFAULTS),
      { name: 'sampler', type: 'string' as const, default: 'fixed' },
      { name: 'head-grid', type: 'numbers' as const, default: [0.5, 0.9] },
      { name: 'difficulty', type: 'string' as const },
      { name: 'search-fraction', type: 'number' as const },
      { name: 'steps', type: 'int' as const, default: 150 },
      { name: 'sweep', type: 'numbers' as const, default: [0.5, 0.7, 0.9, 0.95, 1.01] },
    ];
    const opts = (task: string, ...args: string[]) => recipeOptions(task, parseFlags('train', flags, args));
    const mixed = [0.7, 0.8, 0.9, 0.9, 0.95, 0.99];
    // countdown3's recipe is the main job's: 64 steps and a sweep without one token per step
    expect(opts('countdown3')).toMatchObject({ searchFraction: 0, steps: 64, sweep: [0.5, 0.7, 0.9, 0.95], trainer: { lr: 5e-5, warmup: 10, schedule: 'cosine', rolloutThresholds: mixed, resampleFlatGroups: 2, beta: 0.04 }, headGrid: [0.7, 0.9] });
    expect(opts('countdown3', '--steps', '200', '--sweep', '0.9,1.01')).toMatchObject({ steps: 200, sweep: [0.9, 1.01] });
    expect(opts('countdown3', '--resample-flat-groups', '0').trainer.resampleFlatGroups).toBe(0);
    // given, the default value itself wins over the recipe
    expect(opts('countdown3', '--warmup', '20', '--head-grid', '0.5,0.9', '--schedule', 'constant', '--search-fraction', '0.3')).toMatchObject({
      searchFraction: 0.3,
      trainer: { warmup: 20, schedule: 'constant', rolloutThresholds: mixed },
      headGrid: [0.5, 0.9],
    });
    const learned = opts('countdown3', '--sampler', 'learned');
    expect(learned.trainer.rolloutThresholds).toBeUndefined(); // the learned sampler picks the rollout thresholds
    expect(learned.trainer.lr).toBe(5e-5);
    expect(opts('sudoku4')).toMatchObject({ difficulty: [8, 10], solutions: 'any', steps: 150, sweep: [0.5, 0.7, 0.9, 0.95, 1.01], trainer: { lr: 1e-4, rolloutThresholds: [], resampleFlatGroups: 0 }, headGrid: [0.5, 0.9] });
    expect(opts('sudoku4', '--difficulty', '4-12').difficulty).toEqual([4, 12]);
    expect(opts('arith')).toMatchObject({ difficulty: undefined, trainer: { lr: 1e-4 }, headGrid: [0.5, 0.9] });
  });
});
