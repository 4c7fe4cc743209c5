import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';

import data from 'diffpo/data';

import { CheckpointError } from '../core/errors.js';

/** What a chat template may cost on a short conversation before a folder is refused. */
export const TEMPLATE_LIMITS = { ms: 3000, heapMb: 256, chars: 1_000_000 } as const;

// The probe renders in a worker thread, so that a template that loops or allocates without end is
// stopped (terminated, or killed by its heap limit) instead of hanging or crashing the process.
const PROBE = `
const { parentPort, workerData } = require('node:worker_threads');
const { Template } = require(workerData.jinja);
try {
  const t = new Template(workerData.template);
  const lengths = workerData.contexts.map((c) => t.render(c).length);
  parentPort.postMessage({ ok: true, chars: Math.max(...lengths) });
} catch (err) {
  parentPort.postMessage({ ok: false, message: String((err && err.message) || err).slice(0, 300) });
}`;

/**
 * Renders a chat template on a short two-turn conversation (with and without the generation prompt)
 * under a time, memory and output limit; a CheckpointError naming `name` when it throws, loops,
 * exhausts its heap or emits megabytes. Called when a tokenizer folder is loaded.
 */
export async function probeChatTemplate(template: string, tokens: Record<string, string>, name: string): Promise<void> {
  const messages = [
    { role: 'system', content: 'You are helpful.' },
    { role: 'user', content: 'What is 7 * 6?' },
    { role: 'assistant', content: '42' },
    { role: 'user', content: 'And 6 * 7?' },
  ];
  const contexts = [true, false].map((g) => ({ messages, add_generation_prompt: g, ...tokens }));
  const jinja = createRequire(join(data.dir, 'index.cjs')).resolve('@huggingface/jinja');
  const worker = new Worker(PROBE, {
    eval: true,
    workerData: { jinja, template, contexts },
    resourceLimits: { maxOldGenerationSizeMb: TEMPLATE_LIMITS.heapMb, maxYoungGenerationSizeMb: 32 },
    stdout: true,
    stderr: true,
  });
  type Outcome = { ok: boolean; chars?: number; message?: string } | 'timeout';
  const outcome = await new Promise<Outcome>((resolve) => {
    const timer = setTimeout(() => resolve('timeout'), TEMPLATE_LIMITS.ms);
    const settle = (o: Outcome) => {
      clearTimeout(timer);
      resolve(o);
    };
    worker.on('message', (m: Outcome) => settle(m));
    // an exhausted heap ends the worker with an 'error' event (kept listened to: never unhandled)
    worker.on('error', (e: Error) => settle({ ok: false, message: e.message }));
  });
  void worker.terminate();
  const what = `${name}: tokenizer_config.json's chat_template`;
  if (outcome === 'timeout') throw new CheckpointError(`${what} did not finish rendering a four-turn conversation in ${TEMPLATE_LIMITS.ms} ms (a runaway loop?)`);
  if (!outcome.ok) throw new CheckpointError(`${what} failed to render a four-turn conversation: ${outcome.message}`);
  if (outcome.chars! > TEMPLATE_LIMITS.chars) throw new CheckpointError(`${what} emits ${outcome.chars} characters for a four-turn conversation (more than ${TEMPLATE_LIMITS.chars})`);
}
