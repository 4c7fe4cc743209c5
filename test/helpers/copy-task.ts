// The copy and reverse tasks and the tiny config the trainer tests share, written once in plain
// JavaScript (copy-task.mjs, typed by copy-task.d.mts) so that the tests' child processes import them too.
export { copy4, easyHard, reverse4, TINY } from './copy-task.mjs';
