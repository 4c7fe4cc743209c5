// A LLaDA-8B-Instruct folder from Node, end to end: writes the real layout with random BF16 weights
// (pass a real downloaded folder instead as the first argument), completes a chat prompt with the
// text API, then scores two GSM8K test questions exactly as d1 does. `node examples/llada-gsm8k.mjs [DIR]`
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { evaluate, gsm8kTask, loadTestSet, TextDiffusion, writeLladaFolder } from 'diffpo';

let dir = process.argv[2];
const scratch = dir ? null : mkdtempSync(join(tmpdir(), 'llada-'));
if (scratch) {
  dir = join(scratch, 'llada');
  await writeLladaFolder(dir, { layers: 2, width: 256 }); // LLaDA's vocabulary, names and template; a narrow width to run in seconds
}
const lm = await TextDiffusion.fromPretrained(dir);
console.log(`loaded ${dir}: ${lm.model.numParameters} parameters, ${lm.model.dtype}-resident`);

const reply = await lm.generate('What is 7 * 6?', { genLength: 32, strategy: { kind: 'threshold', threshold: 0.9 }, cache: 'dual' });
console.log(`reply in ${reply.nfe} forwards: ${JSON.stringify(reply.text)}`);

const task = gsm8kTask();
const items = (await loadTestSet(task)).slice(0, 2);
const r = await evaluate(lm.model, task, { items, tokenizer: lm.tokenizer, genLength: 64, sampler: { blockLength: 32, cache: 'dual' } });
console.log(`gsm8k: ${r.items} items, accuracy ${r.accuracy.toFixed(3)}, mean reward ${r.meanReward.toFixed(3)}, mean NFE ${r.meanNfe.toFixed(1)}`);
// a correct, well-formatted answer earns d1's full reward
console.log(`reference answer reward: ${task.reward(items[0], task.response(items[0]))}`);
lm.dispose();
if (scratch) rmSync(scratch, { recursive: true }); // the random folder this example wrote
