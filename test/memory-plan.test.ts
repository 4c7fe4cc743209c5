// memoryPlan against the native core: the activation arena it predicts is the one a training call
// allocates (exactly, for full fine-tuning, checkpointing and LoRA on a BF16 base), and a whole
// training step's peak RSS in a fresh process is what it predicts; fitBatch's choice and its refusal.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { CharTokenizer, DiffpoTrainer, DiffusionLM, fitBatch, InvalidArgumentError, loraParameterCount, memoryPlan, resolveConfig, type LoraTarget } from 'diffpo';

import { copy4, TINY } from './helpers/copy-task.js';

const MID = resolveConfig({ d_model: 256, n_heads: 8, n_kv_heads: 4, n_layers: 3, mlp_hidden_size: 640, vocab_size: 3000, rope_theta: 10000 });

describe('memoryPlan', () => {
  it("predicts the activation arena of a training call exactly: full, checkpointed, LoRA on BF16, LoRA dropout", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'diffpo-plan-'));
    await DiffusionLM.create(MID, { seed: 1, dtype: 'bf16' }).save(dir, { dtype: 'bf16' });
    const B = 3,
      T = 37,
      S = 50;
    const tokens = Int32Array.from({ length: B * T }, (_, i) => (i * 7) % 3000);
    const rows = Int32Array.from({ length: S }, (_, i) => (i * 2) % (B * T));
    const cases: { weights: 'f32' | 'bf16'; checkpointing: 'none' | 'layer'; lora?: { rank: number; targets: LoraTarget[]; dropout?: number } }[] = [
      { weights: 'f32', checkpointing: 'none' },
      { weights: 'f32', checkpointing: 'layer' },
      { weights: 'bf16', checkpointing: 'none', lora: { rank: 8, targets: ['q_proj', 'k_proj', 'v_proj', 'up_proj'] } },
      { weights: 'bf16', checkpointing: 'layer', lora: { rank: 5, targets: ['attn_out', 'ff_out'] } },
      { weights: 'bf16', checkpointing: 'layer', lora: { rank: 5, targets: ['q_proj', 'ff_out'], dropout: 0.05 } },
    ];
    for (const c of cases) {
      const m = await DiffusionLM.fromPretrained(dir, { dtype: c.weights, checkpointing: c.checkpointing, threads: 1 });
      if (c.lora) await m.addLora(c.lora);
      await m.selectedLogProbs({ tokens, batch: B, seqLen: T, rows, targets: rows }, { backward: true });
      const plan = memoryPlan(MID, { ...c, batch: B, seqLen: T, scored: S });
      expect(m.activationBytes, JSON.stringify(c)).toBe(plan.activations);
      expect(plan.trainable).toBe(m.numTrainable);
      m.dispose();
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it("holds a training step's peak RSS in a fresh process within 15% (full fine-tuning with AdamW and a reference copy)", () => {
    const config = { d_model: 512, n_heads: 8, n_kv_heads: 8, n_layers: 6, mlp_hidden_size: 1536, vocab_size: 8000, rope_theta: 10000 };
    const [B, T] = [4, 128];
    // the step: a float32 model, its reference copy, AdamW moments, one forward and backward, one update
    const script = `
      import { AdamW, DiffusionLM } from 'diffpo';
      const before = process.resourceUsage().maxRSS * 1024;
      const m = DiffusionLM.create(${JSON.stringify(config)}, { seed: 1, threads: 1 });
      const ref = DiffusionLM.create(${JSON.stringify(config)}, { seed: 2, threads: 1 });
      const opt = new AdamW(m, { lr: 1e-4 });
      const tokens = Int32Array.from({ length: ${B * T} }, (_, i) => (i * 7) % 8000);
      await ref.selectedLogProbs({ tokens, batch: ${B}, seqLen: ${T}, rows: Int32Array.from(tokens.keys()), targets: tokens });
      await m.selectedLogProbs({ tokens, batch: ${B}, seqLen: ${T}, rows: Int32Array.from(tokens.keys()), targets: tokens }, { backward: true });
      await opt.step();
      console.log(JSON.stringify({ used: process.resourceUsage().maxRSS * 1024 - before }));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const { used } = JSON.parse(r.stdout);
    const plan = memoryPlan(resolveConfig(config), { batch: B, seqLen: T, reference: true });
    // the arena's 25% growth slack is reserved, never touched: RSS sits between the plan without it and the plan
    expect(used).toBeGreaterThan(0.85 * (plan.total - plan.activations / 5));
    expect(used).toBeLessThan(1.15 * plan.total);
  });

  it("puts LLaDA-8B's numbers in the right place: full fine-tuning, and d1's LoRA with and without checkpointing", () => {
    const llada = resolveConfig({ d_model: 4096, n_heads: 32, n_kv_heads: 32, n_layers: 32, mlp_hidden_size: 12288, vocab_size: 126464, embedding_size: 126464, rope_theta: 500000, mask_token_id: 126336 });
    // d1's adapters: q, k, v, up at rank 128 (of its names, the ones LLaDA has)
    expect(loraParameterCount(llada, 128, ['q_proj', 'k_proj', 'v_proj', 'up_proj'])).toBe(32 * 128 * (3 * (4096 + 4096) + (4096 + 12288))); // 168M, as the issue counts
    const d1 = { batch: 6, seqLen: 456, backend: 'cuda' as const };
    const full = memoryPlan(llada, { ...d1, reference: true });
    const lora = memoryPlan(llada, { ...d1, weights: 'bf16', lora: { rank: 128 } });
    const loraCkpt = memoryPlan(llada, { ...d1, weights: 'bf16', lora: { rank: 128 }, checkpointing: 'layer' });
    const gib = (b: number) => b / 2 ** 30;
    expect(gib(full.weights + full.gradients + full.optimizer + full.reference)).toBeGreaterThan(140); // the 160 GB
    expect(gib(lora.total)).toBeLessThan(139); // one H200
    expect(gib(loraCkpt.total)).toBeLessThan(gib(lora.total) - 10);
    expect(gib(loraCkpt.total)).toBeLessThan(78); // one H100
  });

  it('fitBatch takes the most sequences the limit holds, and says what would fit when none does', () => {
    const opts = { seqLen: 64, maxBatch: 64 };
    const limit = memoryPlan(MID, { ...opts, batch: 5 }).total + 1;
    expect(fitBatch(MID, { ...opts, limitBytes: limit }).batch).toBe(5);
    expect(fitBatch(MID, { ...opts, limitBytes: 1e12 }).batch).toBe(64);
    expect(() => fitBatch(MID, { ...opts, limitBytes: 1e6 })).toThrow(InvalidArgumentError);
    expect(() => fitBatch(MID, { ...opts, limitBytes: 1e6 })).toThrow(/one sequence of 64 tokens needs [\d.]+ GiB .* over the limit of 0\.0 GiB; with LoRA \(rank 128: [\d.]+ GiB\), or checkpointing 'layer'/);
  });

  it("DiffpoTrainer's memoryLimit batches the likelihood passes to what the plan says fits, and refuses what cannot fit", async () => {
    const tiny = resolveConfig(TINY);
    const seqLen = new CharTokenizer().encode(copy4.prompt('1234')).length + 5;
    const stepWith = async (memoryLimit: number) => {
      const model = DiffusionLM.create(TINY, { seed: 3, threads: 1 });
      const rl = new DiffpoTrainer({ model, task: copy4, genLength: 5, promptsPerStep: 2, groupSize: 3, seed: 1, dropFlatGroups: false, memoryLimit });
      const info = (await rl.train({ steps: 1 }))!;
      await rl.dispose();
      model.dispose();
      return info;
    };
    const plan = { seqLen, reference: true, threads: 1 };
    const limit = memoryPlan(tiny, { ...plan, batch: 2 }).total;
    expect(fitBatch(tiny, { ...plan, limitBytes: limit, maxBatch: 64 }).batch).toBe(2);
    expect(fitBatch(tiny, { ...plan, limitBytes: limit - 1, maxBatch: 64 }).batch).toBe(1);
    // forwards of two sequences: what fits the limit (the plan's arena for them is exact, tested above)
    expect((await stepWith(limit / 2 ** 30)).tokensPerForward).toBe(2 * seqLen);
    expect((await stepWith(0)).tokensPerForward).toBeUndefined();
    const model = DiffusionLM.create(TINY, { seed: 3 });
    expect(() => new DiffpoTrainer({ model, task: copy4, genLength: 5, memoryLimit: 1e-4 })).toThrow(/one sequence of 6 tokens needs .* over the limit of 0\.0 GiB/);
    model.dispose();
  });
});
