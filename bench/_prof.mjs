import { AdamW, DiffusionLM, presetConfig } from 'diffpo';
const config = presetConfig('small');
const model = DiffusionLM.create(config, { seed: 1, threads: 2 });
const batch = 32, seqLen = 128, N = batch * seqLen;
const tokens = Int32Array.from({ length: N }, (_, i) => (i * 7919) % 63);
const opt = new AdamW(model, { lr: 1e-4 });
const mode = process.argv[2] ?? 'train';
const iters = Number(process.argv[3] ?? 8);
const times = [];
for (let i = 0; i < iters; i++) {
  const t0 = performance.now();
  if (mode === 'train') {
    await model.zeroGrad();
    await model.maskedDiffusionLoss({ tokens, batch, seqLen, normalization: 'pretrain', seed: i }, { backward: true });
    await opt.step();
  } else await model.logits(tokens, { batch, seqLen });
  times.push(performance.now() - t0);
}
times.shift();
times.sort((a, b) => a - b);
console.log(mode, 'min', times[0].toFixed(0), 'median', times[times.length >> 1].toFixed(0), 'ms');
