// Writes models/<task>-base/README.md: the command that trained the checkpoint, its training time,
// and its accuracy, mean reward and mean NFE on the external test set (all rows and the first 256)
// with threshold decoding at several thresholds and with one token per step.
// Usage: node scripts/model-card.mjs TASK TRAIN_SECONDS "COMMAND"
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { DiffusionLM, evaluate, getTask, loadTestSet, readModelFolder } from 'diffpo';

const [taskName, seconds, command] = process.argv.slice(2);
const dir = new URL(`../models/${taskName}-base/`, import.meta.url).pathname;
const task = getTask(taskName);
const model = await DiffusionLM.fromPretrained(dir);
const { tokenizer, genLength } = await readModelFolder(dir);
const test = await loadTestSet(task); // the external test set, or the task's fixed held-out set
const strategies = [
  ['threshold 0.9', { kind: 'threshold', threshold: 0.9 }],
  ['threshold 0.7', { kind: 'threshold', threshold: 0.7 }],
  ['threshold 0.5', { kind: 'threshold', threshold: 0.5 }],
  ['one token per step', { kind: 'steps', steps: genLength }],
];
const rows = [];
for (const [name, strategy] of strategies) {
  const all = await evaluate(model, task, { items: test, tokenizer, genLength, sampler: { strategy } });
  const first = await evaluate(model, task, { items: test.slice(0, 256), tokenizer, genLength, sampler: { strategy } });
  rows.push(`| ${name} | ${all.accuracy.toFixed(3)} | ${first.accuracy.toFixed(3)} | ${all.meanReward.toFixed(3)} | ${all.meanNfe.toFixed(2)} |`);
  console.log(name, all.accuracy, all.meanNfe);
}
const c = model.config;
const card = `# ${taskName}-base

A ${(model.numParameters / 1e6).toFixed(2)}M-parameter LLaDA-architecture masked-diffusion model (D ${c.d_model}, ${c.n_layers} layers,
${c.n_heads} heads, FFN ${c.mlp_hidden_size}, vocabulary ${c.vocab_size} characters), trained from scratch by diffpo with
LLaDA's SFT loss on generated ${taskName} items (never an item of its evaluation set), in BF16.
It is a starting point for RL, not a finished solver.

Trained with (${seconds} s on the project's 2-core machine):

\`\`\`sh
${command}
\`\`\`

Evaluated with \`npx diffpo eval --model models/${taskName}-base --task ${taskName}\` (and \`--threshold\` /
\`--steps ${genLength}\` for the other rows) on ${task.testSetFile ? `the external test set \`data/${task.testSetFile}\` (${test.length} items)` : `its fixed held-out set of ${test.length} generated items (\`getTask('${taskName}').heldOut()\`, never in a training stream; this task has no external test set)`};
${genLength} tokens generated per item (the response and its EOS padding), one block:

| decoding | accuracy (all) | accuracy (first 256) | mean reward | mean NFE |
|---|---|---|---|---|
${rows.join('\n')}

Lower thresholds unmask more tokens per forward: fewer NFEs; the table shows what that costs in
accuracy for this model (one token per step is the slowest: one forward per generated token).
`;
writeFileSync(join(dir, 'README.md'), card);
model.dispose();
