// The page's verdicts for a batch of cases, for tests/test_verdict_differential.py:
// one case per line on stdin (a vector's `inputs`), one answer per line on stdout:
// { checks: { id: [status, code] }, verdict } or { crash: message }. One process
// answers every case, so thousands take seconds.
import { createInterface } from 'node:readline';
import { CHECK_IDS } from '../src/rules.js';
import { observe } from './observe.js';

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  let answer;
  try {
    const result = observe(JSON.parse(line));
    answer = { checks: Object.fromEntries(CHECK_IDS.map((id) => [id, [result.checks[id].status, result.checks[id].code]])), verdict: result.verdict };
  } catch (error) {
    answer = { crash: String(error?.stack ?? error).slice(0, 2000) };
  }
  process.stdout.write(JSON.stringify(answer) + '\n');
}
