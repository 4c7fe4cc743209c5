import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { CheckpointError, DiffpoTrainer, DiffusionLM, encodePrompt, gsm8kTask, HfTokenizer, InvalidArgumentError, loadTokenizer, TextDiffusion, writeLladaFolder, type DiffpoRollout, type Gsm8kItem, type LLaDAConfig } from 'diffpo';

// every folder of this file lives under one root, removed at the end (LLaDA's vocabulary makes even a
// narrow model 64 MB)
const root = mkdtempSync(join(tmpdir(), 'diffpo-real-'));
let made = 0;
const tmp = () => {
  const d = join(root, String(made++));
  mkdirSync(d);
  return d;
};
afterAll(() => rmSync(root, { recursive: true, force: true }));
const cli = (...args: string[]) => spawnSync(process.execPath, ['dist/esm/app/cli.js', ...args], { encoding: 'utf8' });

/** LLaDA-8B's width with one block: 1.25B parameters, 5.0 GB of float32, past 2^32 bytes. */
const ONE_BLOCK: Partial<LLaDAConfig> & Pick<LLaDAConfig, 'd_model' | 'n_heads' | 'n_layers' | 'mlp_hidden_size' | 'vocab_size'> = {
  vocab_size: 126464,
  d_model: 4096,
  n_heads: 32,
  n_kv_heads: 32,
  n_layers: 1,
  mlp_hidden_size: 12288,
  mask_token_id: 126336,
};

function maxRelErr(a: Float32Array, b: Float32Array): number {
  let scale = 1e-12,
    err = 0;
  for (let i = 0; i < a.length; i++) (scale = Math.max(scale, Math.abs(b[i]!))), (err = Math.max(err, Math.abs(a[i]! - b[i]!)));
  return err / scale;
}

describe('real-sized models and files (64-bit sizes and offsets)', () => {
  it('a model past 2^32 bytes of float32 parameters: per-tensor views, a forward, typed refusals of 4 GiB views, little memory', async () => {
    const model = DiffusionLM.create(ONE_BLOCK, { initStd: 0, threads: 2 }); // zero matrices: their pages are never touched
    expect(model.numParameters).toBe(1254109184);
    expect(model.numParameters * 4).toBeGreaterThan(2 ** 32);
    const params = model.parameters();
    const head = params.get('model.transformer.ff_out.weight')!;
    expect(head.length).toBe(126464 * 4096);
    head[head.length - 1] = 1.5; // the last element, past 4 GiB into the block
    expect(model.parameters().get('model.transformer.ff_out.weight')![head.length - 1]).toBe(1.5);
    const logits = await model.logits(Int32Array.from([1, 2, 3]), { batch: 1, seqLen: 3 });
    expect(logits.length).toBe(3 * 126464);
    expect([...logits.subarray(0, 10)]).toEqual(new Array(10).fill(0)); // zero weights: zero logits
    // gradients exist tensor by tensor; the flat views Node cannot make are typed errors, not a double free
    expect(model.gradients().get('model.transformer.wte.weight')!.length).toBe(126464 * 4096);
    expect(() => model.flatGradients()).toThrow(InvalidArgumentError);
    expect(() => model.flatGradients()).toThrow(/more than the 4 GiB a Node.js buffer can view/);
    expect(process.memoryUsage().rss).toBeLessThan(1.5 * 2 ** 30);
    model.dispose();
    const bf16 = DiffusionLM.create(ONE_BLOCK, { initStd: 0, threads: 2, dtype: 'bf16' });
    expect(bf16.parameterBits().get('model.transformer.ff_out.weight')!.length).toBe(126464 * 4096);
    expect(() => bf16.parameters()).toThrow(/BF16/);
    bf16.dispose();
  });

  it('reads tensors at byte offsets past 4 GiB (a sparse file) and gives the same logits', async () => {
    const dir = tmp();
    const model = DiffusionLM.create({ vocab_size: 40, d_model: 32, n_heads: 2, n_layers: 1, mlp_hidden_size: 48 }, { seed: 3 });
    await model.save(dir);
    const file = join(dir, 'model.safetensors');
    const bytes = readFileSync(file);
    const n = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<string, { data_offsets: [number, number] }>;
    const gap = 2 ** 32 + 12345 * 8; // every tensor moved past 4 GiB into the data section
    const moved: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(header)) moved[k] = k === '__metadata__' ? v : { ...v, data_offsets: [v.data_offsets[0] + gap, v.data_offsets[1] + gap] };
    const text = Buffer.from(JSON.stringify(moved));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(text.length));
    const data = bytes.subarray(8 + n);
    rmSync(file);
    const fd = openSync(file, 'w');
    writeSync(fd, len, 0, 8, 0);
    writeSync(fd, text, 0, text.length, 8);
    writeSync(fd, data, 0, data.length, 8 + text.length + gap);
    closeSync(fd);
    expect(statSync(file).size).toBeGreaterThan(2 ** 32);
    const again = await DiffusionLM.fromPretrained(dir);
    const ids = Int32Array.from([1, 5, 9, 30]);
    expect(await again.logits(ids, { batch: 1, seqLen: 4 })).toEqual(await model.logits(ids, { batch: 1, seqLen: 4 }));
    // cut inside the last tensor: a typed error naming the file, not a crash
    truncateSync(file, statSync(file).size - 4);
    await expect(DiffusionLM.fromPretrained(dir)).rejects.toThrow(CheckpointError);
    model.dispose();
    again.dispose();
    rmSync(dir, { recursive: true });
  });
});

describe("LLaDA-8B-Instruct's folder layout (random weights)", () => {
  let dir: string;
  beforeAll(async () => {
    dir = join(tmp(), 'llada');
    await writeLladaFolder(dir, { layers: 2, width: 128, shards: 6, seed: 1, threads: 2 });
  });

  it('writes the real config and 6 shards with their index; loads BF16-resident, and BF16 logits equal float32-resident ones', async () => {
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(config).toMatchObject({ vocab_size: 126464, embedding_size: 126464, mask_token_id: 126336, rope_theta: 500000, n_layers: 2, d_model: 128, torch_dtype: 'bfloat16' });
    const index = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> };
    expect(new Set(Object.values(index.weight_map)).size).toBe(6);
    expect(index.weight_map['model.transformer.blocks.1.ff_out.weight']).toMatch(/^model-0000\d-of-00006\.safetensors$/);
    const bf16 = await DiffusionLM.fromPretrained(dir, { dtype: 'auto', threads: 2 });
    const f32 = await DiffusionLM.fromPretrained(dir, { threads: 2 });
    expect([bf16.dtype, f32.dtype]).toEqual(['bf16', 'f32']);
    // widening is exact: the same weights, so the same logits up to summation order
    const ids = Int32Array.from({ length: 40 }, (_, i) => (i * 7919) % 126000);
    const a = await bf16.logits(ids, { batch: 2, seqLen: 20 });
    const b = await f32.logits(ids, { batch: 2, seqLen: 20 });
    expect(maxRelErr(a, b)).toBeLessThan(1e-5);
    const prompts = [ids.subarray(0, 12), ids.subarray(20, 27)];
    const opts = { genLength: 16, blockLength: 8, cache: 'dual' as const };
    expect((await bf16.generate(prompts, opts)).tokens).toEqual((await f32.generate(prompts, opts)).tokens);
    // a BF16-resident model is for inference: training calls are typed refusals
    await expect(bf16.maskedDiffusionLoss({ tokens: ids, batch: 2, seqLen: 20, normalization: 'pretrain' }, { backward: true })).rejects.toThrow(/BF16 for inference/);
    // saved back as BF16 it is the same bytes
    const again = join(tmp(), 'again');
    await bf16.save(again, { dtype: 'bf16', shards: 6 });
    for (const shard of new Set(Object.values(index.weight_map))) expect(readFileSync(join(again, shard)).equals(readFileSync(join(dir, shard)))).toBe(true);
    bf16.dispose();
    f32.dispose();
  });

  it('a BF16 checkpoint loads BF16-resident in about its own size of memory', () => {
    const big = join(tmp(), 'w512');
    expect(cli('init', '--out', big, '--like', 'llada-8b-instruct', '--width', '512', '--threads', '2').status).toBe(0);
    const file = statSync(join(big, 'model.safetensors')).size;
    const script = `import { DiffusionLM } from 'diffpo'; const base = process.memoryUsage().rss; const m = await DiffusionLM.fromPretrained(${JSON.stringify(big)}, { dtype: 'auto', threads: 2 }); console.log(JSON.stringify({ base, rss: process.memoryUsage().rss, dtype: m.dtype }));`;
    // the product addon as users run it (not a sanitizer build, whose runtime has memory of its own)
    const { LD_PRELOAD: _preload, DIFFPO_NATIVE_PATH: _native, ...env } = process.env;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env });
    expect(r.status, r.stderr).toBe(0);
    const { rss, dtype } = JSON.parse(r.stdout) as { rss: number; dtype: string };
    expect(dtype).toBe('bf16');
    expect(rss).toBeLessThan(1.1 * file + 300 * 2 ** 20); // the target of the real-checkpoint issue
    rmSync(big, { recursive: true });
  });

  it("reads its tokenizer, special tokens and chat template as LLaDA's folder defines them", async () => {
    const tok = (await loadTokenizer(dir)) as HfTokenizer;
    expect(tok).toBeInstanceOf(HfTokenizer);
    expect([tok.eosId, tok.maskId, [...tok.stopIds]]).toEqual([126081, 126336, [126081, 126348]]);
    const prompt = tok.applyChatTemplate([{ role: 'user', content: '  What is 7 * 6?\n' }], { addGenerationPrompt: true });
    // LLaDA's template: BOS, the turn with its content trimmed, then the assistant header
    expect(prompt).toBe('<|startoftext|><|start_header_id|>user<|end_header_id|>\n\nWhat is 7 * 6?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n');
    const ids = tok.encode(prompt!);
    // special tokens at LLaDA's ids: BOS, start/end of header, end of turn, start/end of header
    expect([...ids].filter((id) => id >= 126080)).toEqual([126080, 126346, 126347, 126348, 126346, 126347]);
    expect(tok.decode(ids)).toBe(prompt);
    const text = 'Ünïcödé 日本語 😀 <answer>\n\\boxed{42}\n</answer>';
    expect(tok.decode(tok.encode(text))).toBe(text);
    expect(tok.decode(tok.encode('a<|mdm_mask|>b<|eot_id|>'), { skipSpecialTokens: true })).toBe('ab');
  });

  it('the text API and the command line run the real folder: generate and GSM8K evaluation', async () => {
    const lm = await TextDiffusion.fromPretrained(dir, { threads: 2 });
    expect(lm.model.dtype).toBe('bf16');
    const [one, two] = await lm.generate(['What is 2 + 3?', [{ role: 'user', content: 'Name a prime.' }]], { genLength: 16, cache: 'dual' });
    const alone = await lm.generate('What is 2 + 3?', { genLength: 16, cache: 'dual' });
    expect(alone.tokens).toEqual(one!.tokens); // a batch decodes each prompt as it decodes alone
    expect(two!.rawText).toBe(lm.tokenizer.decode(two!.tokens));
    expect(one!.nfe).toBeGreaterThan(0);
    lm.dispose();
    const ev = cli('eval', '--model', dir, '--task', 'gsm8k', '--limit', '2', '--gen-length', '32', '--threads', '2', '--json');
    expect(ev.status, ev.stderr).toBe(0);
    expect(JSON.parse(ev.stdout)).toMatchObject({ task: 'gsm8k', items: 2 });
    const gen = cli('generate', '--model', dir, '--chat', 'Hello', '--gen-length', '8', '--threads', '2', '--json');
    expect(gen.status, gen.stderr).toBe(0);
    expect(JSON.parse(gen.stdout).tokens.length).toBe(8);
  });

  it('DiFFPO trains on GSM8K through the real tokenizer and template, rewarded by d1\'s function', async () => {
    const tokenizer = await loadTokenizer(dir);
    const model = await DiffusionLM.fromPretrained(dir, { threads: 2, seed: 1 }); // float32: trainable
    const task = gsm8kTask();
    const w0 = Float32Array.from(model.parameters().get('model.transformer.blocks.0.q_proj.weight')!);
    let rollout: DiffpoRollout | null = null;
    // a reward that tells rollouts apart, and four rollout thresholds, so the group is not flat (random weights earn d1's 0 everywhere)
    const rl = new DiffpoTrainer({ model, task, tokenizer, genLength: 16, promptsPerStep: 1, groupSize: 4, lr: 1e-3, seed: 1, rolloutThresholds: [0.5, 0.9, 1.01, 0.7], rewardFns: [(text, item) => task.reward(item as Gsm8kItem, text) + text.length / 1000] });
    await rl.train({ steps: 1, onRollout: (r) => void (rollout = r) });
    const r = rollout as unknown as DiffpoRollout;
    expect(new Set(r.rewards).size).toBeGreaterThan(1); // the premise: a group that is not flat
    const item = r.items[0]!.item as Gsm8kItem;
    // the prompt went through LLaDA's chat template: BOS, the user header, the turn trimmed (as d1's prompts are)
    const prompt = tokenizer.decode(encodePrompt(task, item, tokenizer));
    expect(prompt.startsWith('<|startoftext|><|start_header_id|>user<|end_header_id|>\n\nRespond in the following format:\n<reasoning>')).toBe(true);
    expect(prompt.endsWith(`${item.question.trim()}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n`)).toBe(true);
    expect(model.parameters().get('model.transformer.blocks.0.q_proj.weight')).not.toEqual(w0);
    await rl.dispose();
    model.dispose();
  });

  it('bad folders are typed errors naming the file or key', async () => {
    const bad = (name: string) => {
      const d = join(tmp(), name);
      spawnSync('cp', ['-r', dir, d]);
      return d;
    };
    const noShard = bad('no-shard');
    rmSync(join(noShard, 'model-00003-of-00006.safetensors'));
    await expect(DiffusionLM.fromPretrained(noShard)).rejects.toThrow(/model-00003-of-00006\.safetensors/);
    const truncated = bad('truncated');
    truncateSync(join(truncated, 'model-00006-of-00006.safetensors'), 1000);
    await expect(DiffusionLM.fromPretrained(truncated)).rejects.toThrow(CheckpointError);
    const noTok = bad('no-tokenizer');
    rmSync(join(noTok, 'tokenizer.json'));
    await expect(loadTokenizer(noTok)).rejects.toThrow(/has no tokenizer\.json/);
    const badTok = bad('bad-tokenizer');
    writeFileSync(join(badTok, 'tokenizer.json'), '{"model": {"type": "BPE", "vocab": 7}}');
    await expect(loadTokenizer(badTok)).rejects.toThrow(CheckpointError);
    const badTemplate = bad('bad-template');
    const cfg = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
    // a template that always fails is refused when the folder loads (probed on a short conversation) ...
    writeFileSync(join(badTemplate, 'tokenizer_config.json'), JSON.stringify({ ...cfg, chat_template: '{{ raise_exception("no") }}' }));
    await expect(loadTokenizer(badTemplate)).rejects.toThrow(/chat_template failed to render a four-turn conversation: no/);
    // ... and one that fails on some input only, when it meets that input
    const sometimes = "{% for m in messages %}{% if m.content == 'boom' %}{{ raise_exception('boom') }}{% endif %}{{ m.content }}{% endfor %}";
    writeFileSync(join(badTemplate, 'tokenizer_config.json'), JSON.stringify({ ...cfg, chat_template: sometimes }));
    const t = await loadTokenizer(badTemplate);
    expect(t.applyChatTemplate([{ role: 'user', content: 'x' }])).toBe('x');
    expect(() => t.applyChatTemplate([{ role: 'user', content: 'boom' }])).toThrow(CheckpointError);
    // a tokenizer whose ids run past the model's embedding: an error naming both sizes
    const tiny = DiffusionLM.create({ vocab_size: 1000, d_model: 32, n_heads: 2, n_layers: 1, mlp_hidden_size: 48, mask_token_id: 999 });
    expect(() => TextDiffusion.from(tiny, t)).toThrow(/vocabulary \(126349 ids\) does not fit the model's embedding \(vocab_size 1000\)/);
    tiny.dispose();
  });
});
