import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { CheckpointError, ConfigError, DiffusionLM, resolveConfig } from 'diffpo';

import { lladaShapes, referenceLogits } from './helpers/llada-reference.js';
import { bf16Bits, bf16Value, encodeSafetensors, f16Bits, type Dtype, type RawTensor } from './helpers/safetensors-writer.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'diffpo-ckpt-'));

// A small LLaDA config with GQA, an untied head, embedding_size > vocab_size and both scalings on.
const CONFIG = {
  d_model: 16,
  n_heads: 4,
  n_kv_heads: 2,
  n_layers: 2,
  mlp_hidden_size: 24,
  vocab_size: 11,
  embedding_size: 13,
  mask_token_id: 10,
  eos_token_id: 9,
  pad_token_id: 9,
  rope_theta: 10000,
  rms_norm_eps: 1e-5,
  weight_tying: false,
  scale_logits: true,
  input_emb_norm: true,
  max_sequence_length: 64,
  block_type: 'llama',
  activation_type: 'silu',
  layer_norm_type: 'rms',
  rope: true,
  alibi: false,
  include_bias: false,
  include_qkv_bias: false,
  attention_layer_norm: false,
  block_group_size: 1,
};

// Values exact in F16 (multiples of 2^-10 within +-2) so every dtype stores them without rounding.
function randomTensors(cfg: typeof CONFIG, seed: number, dtypes: Dtype[] = ['F32']): RawTensor[] {
  let s = seed;
  const next = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0), s / 2 ** 32);
  return lladaShapes(cfg).map(([name, shape], i) => {
    const n = shape.reduce((a, d) => a * d, 1);
    const data = new Float32Array(n);
    for (let j = 0; j < n; j++) data[j] = shape.length === 1 ? 1 + Math.round((next() - 0.5) * 256) / 1024 : Math.round((next() - 0.5) * 1024) / 1024;
    const dtype = dtypes[i % dtypes.length]!;
    if (dtype === 'BF16') data.forEach((v, j) => (data[j] = bf16Value(bf16Bits(v))));
    return { name, shape, data, dtype };
  });
}

function writeCheckpoint(dir: string, tensors: RawTensor[], config: object = CONFIG): void {
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(tensors));
}

const TOKENS = Int32Array.from([1, 5, 9, 0, 3, 10, 2, 7, 7, 4, 8, 6]);

describe('loading a LLaDA-layout checkpoint written independently', () => {
  it('gives the logits of an independent float64 reference forward (F32, F16 and BF16 tensors mixed)', async () => {
    const dir = tmp();
    const tensors = randomTensors(CONFIG, 42, ['F32', 'F16', 'BF16']);
    writeCheckpoint(dir, tensors);
    const model = await DiffusionLM.fromPretrained(dir, { threads: 2 });
    const mask = Uint8Array.from([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]);
    const got = await model.logits(TOKENS, { batch: 2, seqLen: 6, attentionMask: mask });
    const want = referenceLogits(CONFIG, new Map(tensors.map((t) => [t.name, t.data])), TOKENS, 2, 6, mask);
    expect(got.length).toBe(2 * 6 * 13);
    let err = 0,
      scale = 0;
    want.forEach((w, i) => ((err = Math.max(err, Math.abs(w - got[i]!))), (scale = Math.max(scale, Math.abs(w)))));
    expect(err / scale).toBeLessThan(2e-6);
    model.dispose();
  });

  it('loads a sharded checkpoint (model.safetensors.index.json) like a single file', async () => {
    const dir = tmp();
    const tensors = randomTensors(CONFIG, 7);
    writeFileSync(join(dir, 'config.json'), JSON.stringify(CONFIG));
    const half = Math.floor(tensors.length / 2);
    const shards = [tensors.slice(0, half), tensors.slice(half)];
    const weightMap: Record<string, string> = {};
    shards.forEach((shard, i) => {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      writeFileSync(join(dir, file), encodeSafetensors(shard));
      for (const t of shard) weightMap[t.name] = file;
    });
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    const model = await DiffusionLM.fromPretrained(dir, { threads: 1 });
    const params = model.parameters();
    for (const t of tensors) expect(params.get(t.name)).toEqual(t.data);
    model.dispose();
  });

  it('converts F16 subnormals, negative zero and BF16 exactly', async () => {
    const dir = tmp();
    const tensors = randomTensors(CONFIG, 3);
    const wte = tensors[0]!;
    wte.dtype = 'F16';
    wte.data.set([2 ** -24, 3 * 2 ** -24, -(2 ** -14), -0, 65504, -1.5]);
    tensors[1]!.dtype = 'BF16';
    tensors[1]!.data.forEach((v, j) => (tensors[1]!.data[j] = bf16Value(bf16Bits(v))));
    writeCheckpoint(dir, tensors);
    const model = await DiffusionLM.fromPretrained(dir);
    const got = model.parameters().get('model.transformer.wte.weight')!;
    expect(Array.from(got.subarray(0, 6))).toEqual([2 ** -24, 3 * 2 ** -24, -(2 ** -14), -0, 65504, -1.5]);
    expect(Object.is(got[3], -0)).toBe(true);
    expect(model.parameters().get(tensors[1]!.name)).toEqual(tensors[1]!.data);
    model.dispose();
  });
});

describe('save and load', () => {
  it('round-trips F32 bit-exactly, with the HF tensor names and a LLaDA config.json', async () => {
    const dir = tmp();
    const model = DiffusionLM.create({ ...CONFIG }, { seed: 5, initStd: 0.3 });
    await model.save(dir);
    const loaded = await DiffusionLM.fromPretrained(dir);
    const a = model.parameters(),
      b = loaded.parameters();
    expect([...b.keys()]).toEqual(lladaShapes(CONFIG).map(([n]) => n));
    for (const [name, t] of a) expect(new Uint32Array(b.get(name)!.slice().buffer)).toEqual(new Uint32Array(t.slice().buffer));
    expect(loaded.config).toMatchObject(CONFIG);
    const logitsA = await model.logits(TOKENS, { batch: 2, seqLen: 6 });
    expect(await loaded.logits(TOKENS, { batch: 2, seqLen: 6 })).toEqual(logitsA);
    expect(readdirSync(dir).sort()).toEqual(['config.json', 'model.safetensors']);
    model.dispose();
    loaded.dispose();
  });

  it('saves BF16 rounded to nearest even (ties, NaN, infinities, overflow to inf)', async () => {
    const dir = tmp();
    const model = DiffusionLM.create({ ...CONFIG }, { seed: 9, initStd: 0.5 });
    const wte = model.parameters().get('model.transformer.wte.weight')!;
    const special = [1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -(1 + 2 ** -8), NaN, Infinity, -Infinity, 3.4e38, 1e-40];
    wte.set(special);
    await model.save(dir, { dtype: 'bf16' });
    const header = JSON.parse(readFileSync(join(dir, 'model.safetensors')).subarray(8, 8 + 4096).toString().split('}}')[0] + '}}');
    expect(header['model.transformer.wte.weight'].dtype).toBe('BF16');
    // read the stored BF16 values themselves: loading refuses a checkpoint with non-finite weights
    const bytes = readFileSync(join(dir, 'model.safetensors'));
    const headerLength = Number(bytes.readBigUInt64LE(0));
    const [begin] = JSON.parse(bytes.subarray(8, 8 + headerLength).toString())['model.transformer.wte.weight'].data_offsets as number[];
    const got = Float32Array.from({ length: wte.length }, (_, i) => bf16Value(bytes.readUInt16LE(8 + headerLength + begin! + 2 * i)));
    await expect(DiffusionLM.fromPretrained(dir)).rejects.toThrow(/holds NaN at index 4/);
    // ties go to even: 1+2^-8 -> 1, 1+3*2^-8 -> 1+2^-6... and above-tie rounds up
    expect(got[0]).toBe(1);
    expect(got[1]).toBe(1 + 2 ** -6);
    expect(got[2]).toBe(1 + 2 ** -7);
    expect(got[3]).toBe(-1);
    expect(Number.isNaN(got[4])).toBe(true);
    expect(got[5]).toBe(Infinity);
    expect(got[6]).toBe(-Infinity);
    expect(got[7]).toBe(Infinity);
    for (let i = 0; i < wte.length; i++) if (i >= special.length) expect(got[i]).toBe(bf16Value(bf16Bits(wte[i]!)));
    model.dispose();
  });

  it('replaces an existing checkpoint without leaving temporary files', async () => {
    const dir = tmp();
    const a = DiffusionLM.create({ ...CONFIG }, { seed: 1 });
    const b = DiffusionLM.create({ ...CONFIG }, { seed: 2 });
    await a.save(dir);
    await b.save(dir, { dtype: 'bf16' });
    expect(readdirSync(dir).sort()).toEqual(['config.json', 'model.safetensors']);
    const loaded = await DiffusionLM.fromPretrained(dir);
    const w = b.parameters().get('model.transformer.wte.weight')!;
    expect(loaded.parameters().get('model.transformer.wte.weight')![0]).toBe(bf16Value(bf16Bits(w[0]!)));
    for (const m of [a, b, loaded]) m.dispose();
  });

  it("removes the temporaries a killed save left behind, and leaves a live writer's alone", async () => {
    const dir = tmp();
    const m = DiffusionLM.create({ ...CONFIG }, { seed: 1 });
    await m.save(dir);
    // a writer that is gone: a child process that has exited
    const dead = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' }).stdout.trim();
    const stale = [`model.safetensors.tmp-${dead}-0123abcd`, `config.json.tmp-${dead}-89abcdef`];
    const live = `model.safetensors.tmp-${process.ppid}-00ff00ff`; // our parent runs: its temporary may still be written
    for (const f of [...stale, live]) writeFileSync(join(dir, f), 'partial');
    await m.save(dir, { dtype: 'bf16' });
    expect(readdirSync(dir).sort()).toEqual(['config.json', 'model.safetensors', live]);
    m.dispose();
  });

  it('refuses a training run stopped while moving a committed checkpoint into place, and says to resume', async () => {
    const dir = tmp();
    const m = DiffusionLM.create({ ...CONFIG }, { seed: 1 });
    await m.save(dir);
    writeFileSync(join(dir, 'checkpoint.json'), JSON.stringify({ format: 'diffpo-checkpoint', step: 14, staging: '.staging-1-abcd', files: [] }));
    mkdirSync(join(dir, '.staging-1-abcd'));
    await expect(DiffusionLM.fromPretrained(dir)).rejects.toThrow(/moving its step-14 checkpoint into place .* resume the run/);
    rmSync(join(dir, '.staging-1-abcd'), { recursive: true }); // the move completed: the step the manifest names is what is there
    (await DiffusionLM.fromPretrained(dir)).dispose();
    m.dispose();
  });

  it('keeps the existing checkpoint intact when a save fails mid-write', async () => {
    const dir = tmp();
    const a = DiffusionLM.create({ ...CONFIG }, { seed: 1 });
    await a.save(dir);
    a.dispose();
    const before = readFileSync(join(dir, 'model.safetensors'));
    const beforeConfig = readFileSync(join(dir, 'config.json'), 'utf8');
    // A child process saves a bigger model into the same directory under a 16 KiB file-size limit
    // (SIGXFSZ ignored, so the write fails with EFBIG part way through the weights).
    const script = `import { DiffusionLM } from 'diffpo';
      const m = DiffusionLM.create({ ...${JSON.stringify(CONFIG)}, d_model: 64, n_heads: 4, n_kv_heads: 4, mlp_hidden_size: 128 }, { seed: 2 });
      try { await m.save(process.argv[1]); process.exit(0); } catch (e) { console.log(e.code); process.exit(3); }`;
    const child = spawnSync('bash', ['-c', `trap '' XFSZ; ulimit -f 16; exec "${process.execPath}" --input-type=module -e "$0" "$1"`, script, dir], {
      encoding: 'utf8',
      cwd: process.cwd(),
    });
    expect(child.status).toBe(3);
    expect(child.stdout.trim()).toBe('ERR_CHECKPOINT');
    expect(readFileSync(join(dir, 'model.safetensors'))).toEqual(before);
    expect(readFileSync(join(dir, 'config.json'), 'utf8')).toBe(beforeConfig);
    expect(readdirSync(dir).sort()).toEqual(['config.json', 'model.safetensors']);
  });
});

describe('bad checkpoints give a clear CheckpointError or ConfigError', () => {
  const good = () => encodeSafetensors(randomTensors(CONFIG, 11));
  async function loadWith(bytes: Buffer, config: object = CONFIG) {
    const dir = tmp();
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    writeFileSync(join(dir, 'model.safetensors'), bytes);
    return DiffusionLM.fromPretrained(dir);
  }
  function withHeader(mutate: (h: Record<string, any>) => void): Buffer {
    const bytes = good();
    const n = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString());
    mutate(header);
    const json = Buffer.from(JSON.stringify(header));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    return Buffer.concat([len, json, bytes.subarray(8 + n)]);
  }
  const wte = 'model.transformer.wte.weight';
  const cases: [string, () => Buffer, RegExp][] = [
    ['an empty file', () => Buffer.alloc(0), /truncated: 0 bytes/],
    ['a file truncated in the data', () => good().subarray(0, good().length - 10), /out of range .*truncated/],
    ['a header length beyond the file', () => { const b = good(); b.writeBigUInt64LE(BigInt(b.length), 0); return b; }, /header length \d+ runs past the end/],
    ['a malformed JSON header', () => { const b = good(); b[8] = 0x5b; return b; }, /malformed JSON header/],
    ['an unknown dtype', () => withHeader((h) => (h[wte].dtype = 'F8_E4M3')), /unknown or unsupported dtype "F8_E4M3"/],
    ['data offsets out of range', () => withHeader((h) => (h[wte].data_offsets = [10 ** 9, 10 ** 9 + h[wte].data_offsets[1] - h[wte].data_offsets[0]])), /out of range/],
    ['overlapping data offsets', () => withHeader((h) => {
      const q = h['model.transformer.blocks.0.attn_norm.weight'];
      const len = q.data_offsets[1] - q.data_offsets[0];
      q.data_offsets = [h[wte].data_offsets[0], h[wte].data_offsets[0] + len];
    }), /overlap/],
    ['a byte count that does not match the shape', () => withHeader((h) => (h[wte].shape = [13, 17])), /needs/],
    ['a missing tensor', () => withHeader((h) => delete h['model.transformer.ln_f.weight']), /missing tensor 'model.transformer.ln_f.weight'/],
    ['an extra tensor', () => withHeader((h) => (h["model.transformer.blocks.9.q_proj.weight"] = { dtype: "F32", shape: [0, 16], data_offsets: [0, 0] })), /unexpected tensor 'model.transformer.blocks.9.q_proj.weight'/],
  ];
  for (const [what, bytes, message] of cases) {
    it(what, async () => {
      const p = loadWith(bytes());
      await expect(p).rejects.toBeInstanceOf(CheckpointError);
      await expect(p).rejects.toThrow(message);
    });
  }

  it('a tensor of the wrong shape', async () => {
    // a checkpoint of a model with a wider FFN, read with this config
    const other = { ...CONFIG, mlp_hidden_size: 32 };
    const p = loadWith(encodeSafetensors(randomTensors(other, 1)));
    await expect(p).rejects.toThrow(/tensor 'model.transformer.blocks.0.ff_proj.weight' has shape \[32,16\] but the config needs \[24,16\]/);
  });

  it('a missing config.json, invalid JSON, or an unsupported config value names the problem', async () => {
    const dir = tmp();
    await expect(DiffusionLM.fromPretrained(dir)).rejects.toThrow(/config\.json/);
    writeFileSync(join(dir, 'config.json'), '{"d_model": ');
    await expect(DiffusionLM.fromPretrained(dir)).rejects.toBeInstanceOf(CheckpointError);
    for (const [key, value] of [['alibi', true], ['include_bias', true], ['block_type', 'sequential'], ['activation_type', 'gelu'], ['n_kv_heads', 3], ['embedding_size', 5], ['mask_token_id', 11]] as const) {
      const p = loadWith(good(), { ...CONFIG, [key]: value });
      await expect(p).rejects.toBeInstanceOf(ConfigError);
      await expect(p).rejects.toMatchObject({ key });
    }
  });

  it('a config edited to 2000 layers fails on the first missing tensor before anything is allocated; one beyond the machine is a ConfigError', async () => {
    const rss = process.memoryUsage().rss;
    const p = loadWith(good(), { ...CONFIG, n_layers: 2000, d_model: 4096, n_heads: 4, mlp_hidden_size: 16384 }); // 1.6 TB of float32
    await expect(p).rejects.toBeInstanceOf(ConfigError);
    await expect(p).rejects.toThrow(/GiB of float32 parameters, more than this machine's/);
    const q = loadWith(good(), { ...CONFIG, n_layers: 2000 });
    await expect(q).rejects.toThrow(/missing tensor 'model.transformer.blocks.2.attn_norm.weight'/);
    expect(process.memoryUsage().rss - rss).toBeLessThan(64 * 2 ** 20);
    expect(() => DiffusionLM.create({ ...CONFIG, n_layers: 100_000, d_model: 1024, n_heads: 4, mlp_hidden_size: 4096 })).toThrow(ConfigError);
  });

  it('files that are not regular files, and shard names that leave the folder, are CheckpointErrors (no hang, no raw EISDIR)', async () => {
    const fifo = tmp();
    expect(spawnSync('mkfifo', [join(fifo, 'config.json')]).status).toBe(0);
    await expect(DiffusionLM.fromPretrained(fifo)).rejects.toThrow(/config.json is not a regular file \(a FIFO\)/);
    const dirAsFile = tmp();
    writeFileSync(join(dirAsFile, 'config.json'), JSON.stringify(CONFIG));
    mkdirSync(join(dirAsFile, 'model.safetensors'));
    await expect(DiffusionLM.fromPretrained(dirAsFile)).rejects.toThrow(/model.safetensors is not a regular file \(a directory\)/);
    writeFileSync(join(dirAsFile, 'config.json'), '[1, 2]');
    await expect(DiffusionLM.fromPretrained(dirAsFile)).rejects.toThrow(/must hold a JSON object/);
    for (const shard of ['..', '.', '']) {
      const dir = tmp();
      writeFileSync(join(dir, 'config.json'), JSON.stringify(CONFIG));
      writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { 'model.transformer.wte.weight': shard } }));
      const p = DiffusionLM.fromPretrained(dir);
      await expect(p).rejects.toBeInstanceOf(CheckpointError);
      await expect(p).rejects.toThrow(/invalid shard file name/);
    }
  });

  it('the resolved config keeps LLaDA keys and fills defaults', () => {
    const c = resolveConfig({ d_model: 8, n_heads: 2, n_layers: 1, mlp_hidden_size: 16, vocab_size: 10 });
    expect(c).toMatchObject({ n_kv_heads: 2, embedding_size: 10, mask_token_id: 9, eos_token_id: 8, block_type: 'llama', rope: true, alibi: false });
  });

  it('f16Bits helper is exact (sanity of the test encoder)', () => {
    expect(f16Bits(1)).toBe(0x3c00);
    expect(f16Bits(-2)).toBe(0xc000);
    expect(f16Bits(2 ** -24)).toBe(1);
    expect(bf16Bits(1 + 2 ** -8)).toBe(0x3f80);
  });
});
