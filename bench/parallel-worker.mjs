// One side of `npm run bench -- parallel`, run alone or under mpirun (bench/parallel.mjs starts it):
// timed SFT or DiFFPO steps, the time spent in all-reduces, and (mode allreduce) the all-reduce alone
// over buffers of growing size. Rank 0 prints one JSON line.
//   node bench/parallel-worker.mjs sft|rl|allreduce STEPS THREADS [CONFIG]
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';

import { DiffpoTrainer, DiffusionLM, presetConfig, Rng, SftTrainer, sudoku4Task, worldFromEnvironment } from 'diffpo';

const [mode, stepsArg, threadsArg, config = 'tiny'] = process.argv.slice(2);
const steps = Number(stepsArg),
  threads = Number(threadsArg);
const world = worldFromEnvironment();
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

// the job's collectives, timed (all-reduces of at least 64 KiB: the gradients, not the small gathers)
let reduceMs = 0;
const timed = {
  rank: world.rank,
  size: world.size,
  engine: world.engine,
  allReduceSum: async (data) => {
    const t0 = performance.now();
    await world.allReduceSum(data);
    if (data.byteLength >= 65536) reduceMs += performance.now() - t0;
  },
  broadcast: (data, root) => world.broadcast(data, root),
  barrier: () => world.barrier(),
  abort: (code) => world.abort(code),
};

const result = { mode, ranks: world.size, threads, engine: world.engine };
if (mode === 'allreduce') {
  result.sizes = [];
  for (const mib of [1, 4, 16, 64]) {
    const data = new Float32Array((mib * 2 ** 20) / 4).fill(1);
    const ms = [];
    for (let i = 0; i < 7; i++) {
      await world.barrier();
      const t0 = performance.now();
      await world.allReduceSum(data);
      ms.push(performance.now() - t0);
    }
    result.sizes.push({ bytes: data.byteLength, ms: median(ms.slice(1)) });
  }
} else {
  const times = [],
    reduces = [];
  let trainer, tokensPerStep;
  const onStep = (t0) => () => {
    times.push(performance.now() - t0.at);
    reduces.push(reduceMs);
    reduceMs = 0;
    t0.at = performance.now();
  };
  const clock = { at: 0 };
  if (mode === 'sft') {
    const model = DiffusionLM.create(presetConfig(config), { seed: 1, threads });
    const task = sudoku4Task();
    trainer = new SftTrainer(model, { task, batchSize: 32, seed: 1, world: timed });
    tokensPerStep = 32 * (trainer.tokenizer.encode(task.prompt(task.generate(new Rng(0)))).length + trainer.responseLength);
    result.parameters = model.numParameters;
    clock.at = performance.now();
    await trainer.train({ steps, onStep: onStep(clock) });
  } else {
    const base = fileURLToPath(new URL('../models/sudoku4-base', import.meta.url));
    const model = await DiffusionLM.fromPretrained(base, { threads });
    const genLength = JSON.parse(readFileSync(`${base}/generation_config.json`, 'utf8')).gen_length;
    // the main job's stream; every group kept, so every step does the same work
    trainer = new DiffpoTrainer({ model, task: sudoku4Task({ empty: [8, 10], solutions: 'any' }), genLength, seed: 1, world: timed, dropFlatGroups: false });
    tokensPerStep = 8 * 6 * genLength; // rollout tokens of a step (promptsPerStep x groupSize x genLength)
    result.parameters = model.numParameters;
    clock.at = performance.now();
    await trainer.train({ steps, onStep: onStep(clock) });
    await trainer.dispose();
  }
  // the first steps grow arenas and warm caches
  const kept = times.slice(2),
    keptReduce = reduces.slice(2);
  result.gradientBytes = result.parameters * 4;
  result.stepMs = median(kept);
  result.tokensPerS = tokensPerStep / (result.stepMs / 1000);
  result.allReduceMsPerStep = median(keptReduce);
}
if (world.rank === 0) console.log(JSON.stringify(result));
