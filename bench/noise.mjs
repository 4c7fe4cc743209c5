// `npm run bench -- noise [--sequences 48] [--block 32] [--forwards 4] [--threads 2]`: the memory of
// sampled decoding (temperature 1) at LLaDA-8B's vocabulary (126,464 ids) on a one-block model of
// width 32, so that the vocabulary's rows dominate: peak RSS of the process against the logits the
// forward keeps (rows x vocabulary float32) and against the host buffer of Gumbel noise the sampler
// held before its noise moved beside the logits (rows x vocabulary float64, the 1.55 GB at 48
// rollouts and a 32-token block). Run in a fresh process: peak RSS is the whole process's.
import { mkdirSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { DiffusionLM } from 'diffpo';

const mib = (b) => Math.round(b / 2 ** 20);

export async function run(args) {
  const { values: v } = parseArgs({ args, options: { sequences: { type: 'string', default: '48' }, block: { type: 'string', default: '32' }, forwards: { type: 'string', default: '4' }, threads: { type: 'string', default: '2' } } });
  const [S, L, F] = [Number(v.sequences), Number(v.block), Number(v.forwards)];
  const V = 126464;
  const config = { d_model: 32, n_heads: 4, n_kv_heads: 4, n_layers: 1, mlp_hidden_size: 64, vocab_size: V, embedding_size: V, mask_token_id: 126336, rope_theta: 10000 };
  const model = DiffusionLM.create(config, { seed: 0, threads: Number(v.threads) });
  const prompts = Array.from({ length: S }, (_, i) => Int32Array.from({ length: 16 }, (_, t) => (i * 31 + t * 7) % 1000));
  const before = process.resourceUsage().maxRSS * 1024;
  const t0 = performance.now();
  // maxNfe stops each sequence after F forwards (the last fills the block): the peak is per forward
  const r = await model.generate(prompts, { genLength: L, blockLength: L, strategy: { kind: 'threshold', threshold: 0.9 }, temperature: 1, seed: 1, maxNfe: F });
  const seconds = (performance.now() - t0) / 1000;
  const peak = process.resourceUsage().maxRSS * 1024;
  const rows = S * L; // the first forward scores every masked position of every sequence
  const result = {
    sequences: S,
    block: L,
    vocab: V,
    forwards: Math.max(...r.nfe),
    seconds,
    rssBeforeBytes: before,
    peakRssBytes: peak,
    logitsBytes: rows * V * 4,
    formerNoiseBufferBytes: rows * V * 8,
  };
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  writeFileSync(new URL('./results/noise.json', import.meta.url), JSON.stringify(result, null, 2) + '\n');
  console.log(`| sequences x block | vocabulary | peak RSS | before decoding | the forward's logits | the former host noise buffer | seconds (${result.forwards} forwards) |`);
  console.log('|---|---|---|---|---|---|---|');
  console.log(`| ${S} x ${L} | ${V} | ${mib(peak)} MiB | ${mib(before)} MiB | ${mib(result.logitsBytes)} MiB | ${mib(result.formerNoiseBufferBytes)} MiB | ${seconds.toFixed(1)} |`);
}
