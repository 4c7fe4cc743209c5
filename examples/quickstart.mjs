// Quick start: a tiny LLaDA-architecture model learns, with LLaDA's masked-diffusion loss, a copy
// task (the second half of each sequence repeats the first), then is saved in BF16, reloaded, asked
// to fill in a fully masked second half in one forward pass, and finally decodes completions with
// threshold decoding and a dual KV cache.
// Run: node examples/quickstart.mjs   (a few seconds on 2 cores)
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { AdamW, DiffusionLM } from 'diffpo';

const V = 32; // ids 0..29 are symbols; 31 is the mask token (the config's default: vocab_size - 1)
const HALF = 6,
  T = 2 * HALF;
const model = DiffusionLM.create({ vocab_size: V, d_model: 64, n_heads: 4, n_layers: 2, mlp_hidden_size: 128, rope_theta: 10000 }, { seed: 1 });
const opt = new AdamW(model, { lr: 3e-3, weightDecay: 0.01, maxGradNorm: 1 });

let state = 12345;
const rand = (n) => ((state = (Math.imul(state, 1103515245) + 12345) >>> 0), state % n);
function batch(B) {
  const tokens = new Int32Array(B * T);
  for (let b = 0; b < B; b++)
    for (let t = 0; t < HALF; t++) tokens[b * T + t] = tokens[b * T + HALF + t] = rand(30);
  return tokens;
}

for (let step = 1; step <= 400; step++) {
  await model.zeroGrad();
  const { loss } = await model.maskedDiffusionLoss({ tokens: batch(32), batch: 32, seqLen: T, normalization: 'pretrain' }, { backward: true });
  await opt.step();
  if (step % 50 === 0) console.log(`step ${step}  loss ${loss.toFixed(3)}`);
}

const dir = join(mkdtempSync(join(tmpdir(), 'diffpo-quickstart-')), 'copy');
await model.save(dir, { dtype: 'bf16' });
const loaded = await DiffusionLM.fromPretrained(dir);

const M = loaded.config.mask_token_id;
const prompt = [3, 14, 15, 9, 26, 5];
const input = Int32Array.from([...prompt, ...new Array(HALF).fill(M)]);
const logits = await loaded.logits(input, { batch: 1, seqLen: T });
const E = loaded.config.embedding_size;
const filled = Array.from(input, (tok, t) => {
  if (tok !== M) return tok;
  const row = Array.from(logits.subarray(t * E, t * E + 30));
  return row.indexOf(Math.max(...row));
});
console.log('input ', Array.from(input, (t) => (t === M ? '_' : t)).join(' '));
console.log('filled', filled.join(' '));

// Decoding: each prompt is completed in blocks of 3; confident positions are unmasked together.
const prompts = [Int32Array.from(prompt), Int32Array.from([7, 7, 1, 0, 12, 29])];
const r = await loaded.generate(prompts, { genLength: HALF, blockLength: 3, strategy: { kind: 'threshold', threshold: 0.9 }, cache: 'dual' });
prompts.forEach((p, b) =>
  console.log(`generate ${Array.from(p).join(' ')} -> ${Array.from(r.tokens.subarray(b * HALF, (b + 1) * HALF)).join(' ')} in ${r.nfe[b]} forwards`),
);
model.dispose();
loaded.dispose();
