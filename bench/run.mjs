// Benchmark entry point: `npm run bench -- <name> [options]`. Each benchmark writes
// bench/results/<name>.json and prints a Markdown table.
const benches = {
  model: () => import('./model.mjs'),
  step: () => import('./step.mjs'),
  decode: () => import('./decode.mjs'),
  likelihood: () => import('./likelihood.mjs'),
  parallel: () => import('./parallel.mjs'),
  llada: () => import('./llada.mjs'),
  lora: () => import('./lora.mjs'),
  noise: () => import('./noise.mjs'),
};
const [name = 'model', ...args] = process.argv.slice(2);
if (!benches[name]) {
  console.error(`unknown benchmark '${name}' (one of: ${Object.keys(benches).join(', ')})`);
  process.exit(1);
}
const { run } = await benches[name]();
await run(args);
