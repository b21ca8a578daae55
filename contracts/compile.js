// Compile a solc standard-JSON input (stdin) with the pinned solc-js; print the output (stdout).
// Usage: node compile.js <path of the npm solc package> <expected version, e.g. 0.8.28>
"use strict";
const [solcPath, expected] = process.argv.slice(2);
const solc = require(solcPath);
const version = solc.version();
if (!version.startsWith(`${expected}+`)) {
  process.stderr.write(`solc ${version} is installed but ${expected} is pinned\n`);
  process.exit(2);
}
const chunks = [];
process.stdin.on("data", (chunk) => chunks.push(chunk));
process.stdin.on("end", () => {
  const output = JSON.parse(solc.compile(Buffer.concat(chunks).toString("utf8")));
  output.compilerVersion = version.replace(/\.Emscripten.*$/, "");
  process.stdout.write(JSON.stringify(output));
});
