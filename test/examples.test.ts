import { spawnSync } from 'node:child_process';

import { describe, expect, it } from 'vitest';

describe('examples', () => {
  it('quickstart trains a copy task, round-trips a BF16 checkpoint, fills the masked half and decodes', () => {
    const r = spawnSync(process.execPath, ['examples/quickstart.mjs'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/filled 3 14 15 9 26 5 3 14 15 9 26 5/);
    expect(r.stdout).toMatch(/generate 3 14 15 9 26 5 -> 3 14 15 9 26 5 in [2-6] forwards/);
    expect(r.stdout).toMatch(/generate 7 7 1 0 12 29 -> 7 7 1 0 12 29 in [2-6] forwards/);
  });

  it('llada-gsm8k loads the real layout BF16-resident, chats and scores GSM8K as d1', () => {
    const r = spawnSync(process.execPath, ['examples/llada-gsm8k.mjs'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/parameters, bf16-resident/);
    expect(r.stdout).toMatch(/^reply in \d+ forwards: ".*"$/m);
    expect(r.stdout).toMatch(/^gsm8k: 2 items, accuracy [\d.]+, mean reward [\d.]+, mean NFE [\d.]+$/m);
    expect(r.stdout).toMatch(/^reference answer reward: 4$/m);
  });

  it('lora-rl trains adapters on the BF16 base against the base itself, saves a PEFT folder that reloads and merges, and plans LLaDA-8B', () => {
    const r = spawnSync(process.execPath, ['examples/lora-rl.mjs'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^bf16 base of 1066112 parameters, 45056 trainable in the adapters$/m);
    const kl = [...r.stdout.matchAll(/^step \d: reward [\d.]+, KL ([\d.e+-]+), NFE [\d.]+$/gm)].map((m) => Number(m[1]));
    expect(kl.length).toBe(3);
    expect(kl[0]).toBe(0); // the adapters start at B = 0: the policy is its reference
    expect(Math.max(...kl)).toBeGreaterThan(0); // once they moved, the base (adapters off) differs from it
    expect(r.stdout).toMatch(/^saved adapter_config\.json, adapter_model\.safetensors$/m);
    expect(r.stdout).toMatch(/^reloaded adapters score as trained: true$/m);
    expect(r.stdout).toMatch(/^merged: adapters gone$/m);
    expect(r.stdout).toMatch(/^LLaDA-8B, LoRA rank 128 on a BF16 base, checkpointing: 22\.3 GiB$/m);
  });

  it('rl-learned-threshold trains jointly from the arith base and evaluates the head it saved with the weights', () => {
    const r = spawnSync(process.execPath, ['examples/rl-learned-threshold.mjs'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.match(/^step \d+: reward [\d.]+, NFE [\d.]+, thresholds 0.5:\d+% 0.7:\d+% 0.9:\d+% 1.01:\d+%$/gm)!.length).toBe(8);
    const acc = (label: string) => Number(new RegExp(`^${label}: accuracy ([\\d.]+), mean NFE ([\\d.]+)$`, 'm').exec(r.stdout)![1]);
    const nfe = (label: string) => Number(new RegExp(`^${label}: accuracy [\\d.]+, mean NFE ([\\d.]+)$`, 'm').exec(r.stdout)![1]);
    // the learned threshold lies between the grid's extremes in cost, and the base stays accurate
    expect(nfe('learned threshold')).toBeGreaterThanOrEqual(nfe('threshold 0.5'));
    expect(nfe('learned threshold')).toBeLessThanOrEqual(20);
    for (const label of ['learned threshold', 'threshold 0.5', 'threshold 0.9']) expect(acc(label)).toBeGreaterThan(0.8);
  });
});
