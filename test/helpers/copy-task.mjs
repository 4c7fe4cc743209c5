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

/**
 * Easy and hard prompts that need different thresholds. Easy items `E<d>` (prompt `S<d>`) ask for d
 * four times: a trained model is sure of every digit, so any threshold decodes them in one forward.
 * Hard items `H<d>` (prompt `A`) ask for 0101 or 1010 (either is right; the item carries the one SFT
 * shows): each digit alone is a coin flip, so unmasking several at once mixes the two answers (greedy
 * decoding too: each position's argmax follows its own near-tie), while one digit per forward lets the
 * first decide the rest.
 */
export const easyHard = {
  name: 'easy-hard',
  generate: (rng) => (rng.int(2) === 0 ? `E${rng.int(10)}` : `H${rng.int(2)}`),
  prompt: (x) => (x[0] === 'E' ? `S${x[1]}\n` : 'A\n'),
  response: (x) => (x[0] === 'E' ? x[1].repeat(4) : x[1] === '0' ? '0101' : '1010'),
  reward: (x, c) => (easyHard.correct(x, c) ? 1 : 0),
  correct: (x, c) => (x[0] === 'E' ? c === x[1].repeat(4) : c === '0101' || c === '1010'),
  key: (x) => x,
  parseTestSet: (t) => t.split('\n'),
};
