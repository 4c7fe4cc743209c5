// `npm run bench -- step [--config small] [--mode train|forward] [--iters 10] [--threads 2] [--backend cpu|cuda|cuda-fp32]`: min and
// median wall time of one training step (masked-diffusion loss + backward + AdamW) or one forward on a
// preset's benchmark shape; handy under `perf record` when tuning kernels.
import { parseArgs } from 'node:util';

import { AdamW, DiffusionLM, presetConfig } from 'diffpo';

import { SHAPES } from './model.mjs';

export async function run(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string', default: 'small' },
      mode: { type: 'string', default: 'train' },
      iters: { type: 'string', default: '10' },
      threads: { type: 'string', default: '2' },
      backend: { type: 'string', default: 'cpu' },
    },
  });
  const { batch, seqLen } = SHAPES[values.config];
  const config = presetConfig(values.config);
  const model = DiffusionLM.create(config, { seed: 1, threads: Number(values.threads), backend: values.backend });
  const tokens = Int32Array.from({ length: batch * seqLen }, (_, i) => (i * 7919) % (config.vocab_size - 1));
  const opt = new AdamW(model, { lr: 1e-4 });
  const times = [];
  for (let i = 0; i <= Number(values.iters); i++) {
    const t0 = performance.now();
    if (values.mode === 'train') {
      await model.zeroGrad();
      await model.maskedDiffusionLoss({ tokens, batch, seqLen, normalization: 'pretrain', seed: i }, { backward: true });
      await opt.step();
    } else {
      await model.logits(tokens, { batch, seqLen });
    }
    if (i > 0) times.push(performance.now() - t0); // the first call grows the arena
  }
  times.sort((a, b) => a - b);
  const min = times[0],
    median = times[times.length >> 1];
  console.log(`${values.config} ${values.mode} (${model.backend}): min ${min.toFixed(1)} ms, median ${median.toFixed(1)} ms, ${((batch * seqLen) / (median / 1000)).toFixed(0)} tokens/s (median)`);
  model.dispose();
}
