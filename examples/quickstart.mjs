// Quick start: a tiny LLaDA-architecture model learns, with LLaDA's masked-diffusion loss, to fill in
// the masked tokens of arithmetic sequences ("3 5 7 9 ..."), then is saved, reloaded and queried.
// Run: node examples/quickstart.mjs   (a few seconds on 2 cores)
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { AdamW, DiffusionLM } from 'diffpo';

const V = 32; // token ids 0..30 are numbers, 31 is the mask
const T = 12;
const model = DiffusionLM.create({ vocab_size: V, d_model: 64, n_heads: 4, n_layers: 2, mlp_hidden_size: 128, rope_theta: 10000 }, { seed: 1 });
const opt = new AdamW(model, { lr: 3e-3, weightDecay: 0.01, maxGradNorm: 1 });

// A batch of sequences start, start+step, ... (mod 31).
function batch(B, seed) {
  const tokens = new Int32Array(B * T);
  let s = seed;
  const rand = (n) => ((s = (s * 1103515245 + 12345) >>> 0), s % n);
  for (let b = 0; b < B; b++) {
    const start = rand(31), step = 1 + rand(4);
    for (let t = 0; t < T; t++) tokens[b * T + t] = (start + step * t) % 31;
  }
  return tokens;
}

for (let step = 1; step <= 150; step++) {
  await model.zeroGrad();
  const { loss } = await model.maskedDiffusionLoss({ tokens: batch(32, step), batch: 32, seqLen: T, normalization: 'pretrain' }, { backward: true });
  await opt.step();
  if (step % 25 === 0) console.log(`step ${step}  loss ${loss.toFixed(3)}`);
}

const dir = join(mkdtempSync(join(tmpdir(), 'diffpo-quickstart-')), 'arith');
await model.save(dir, { dtype: 'bf16' });
const loaded = await DiffusionLM.fromPretrained(dir);

// Mask every other position of a new sequence and read the model's guesses.
const clean = Int32Array.from({ length: T }, (_, t) => (4 + 3 * t) % 31);
const masked = clean.map((tok, t) => (t % 2 ? loaded.config.mask_token_id : tok));
const logits = await loaded.logits(masked, { batch: 1, seqLen: T });
const E = loaded.config.embedding_size;
const guess = Array.from(masked, (tok, t) => {
  if (tok !== loaded.config.mask_token_id) return tok;
  const row = logits.subarray(t * E, t * E + V - 1);
  return row.indexOf(Math.max(...row));
});
console.log('input   ', Array.from(masked, (t) => (t === loaded.config.mask_token_id ? '_' : t)).join(' '));
console.log('filled  ', guess.join(' '));
console.log('expected', Array.from(clean).join(' '));
model.dispose();
loaded.dispose();
