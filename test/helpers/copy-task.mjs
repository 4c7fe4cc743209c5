// A trivial task shared by the trainer tests: repeat four digits. The reward is the fraction of
// digits right (dense, so RL has a gradient to follow); accuracy needs all four. Plain JavaScript so
// that the tests' child processes (test/fixtures) import it too; copy-task.ts gives it types.

export const copy4 = {
  name: 'copy4',
  generate: (rng) => Array.from({ length: 4 }, () => rng.int(10)).join(''),
  prompt: (x) => `S${x}\n`,
  response: (x) => x,
  reward: (x, c) => [...x].filter((d, i) => c[i] === d).length / 4,
  correct: (x, c) => c === x,
  key: (x) => x,
  parseTestSet: (t) => t.split('\n'),
};

/** The same digits reversed: a second task for mixtures. */
export const reverse4 = { ...copy4, name: 'reverse4', prompt: (x) => `C${x}\n`, response: (x) => [...x].reverse().join(''), reward: (x, c) => [...x].reverse().filter((d, i) => c[i] === d).length / 4, correct: (x, c) => c === [...x].reverse().join('') };

/** A tiny config over the shared 64-id character vocabulary. */
export const TINY = { vocab_size: 64, d_model: 64, n_heads: 4, n_layers: 2, mlp_hidden_size: 128, rope_theta: 10000 };
