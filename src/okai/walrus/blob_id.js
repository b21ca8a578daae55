#!/usr/bin/env node
// Real Walrus blob IDs (RS2 encoding, 1000 shards) computed with @mysten/walrus-wasm.
//
// Usage:
//   node blob_id.js WASM_PACKAGE_DIR FILE...   print "<blobId>  <file>" per file
//   node blob_id.js WASM_PACKAGE_DIR --serve   answer requests on stdin, one per line
//
// Served protocol (okai.walrus.blob_ids drives it): each request is one JSON line,
//   {"path": "/abs/file", "offset": 0, "length": 17}   bytes [offset, offset+length) of a file
//   {"inline": 17}                                     followed by exactly 17 raw bytes
// and each answer one JSON line, {"blobId": "...", "length": 17} or {"error": "..."}.
// Loading the wasm module once per process saves its start-up on every blob.
'use strict';

const fs = require('fs');

const N_SHARDS = 1000;

function loadEncoder(packageDir) {
  const wasm = require(packageDir);
  return new wasm.BlobEncoder(N_SHARDS);
}

function blobIdOf(encoder, bytes) {
  // compute_metadata returns [blobIdBytes, {Digest: root}, unencodedLength, "RS2"].
  const metadata = encoder.compute_metadata(bytes);
  return Buffer.from(metadata[0]).toString('base64url');
}

function readSlice(path, offset, length) {
  const buffer = Buffer.alloc(length);
  const fd = fs.openSync(path, 'r');
  try {
    let done = 0;
    while (done < length) {
      const n = fs.readSync(fd, buffer, done, length - done, offset + done);
      if (n === 0) throw new Error(`${path} ends before byte ${offset + length}`);
      done += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return buffer;
}

function answer(encoder, request, bytes) {
  try {
    const data = bytes !== null ? bytes : readSlice(request.path, request.offset, request.length);
    return { blobId: blobIdOf(encoder, data), length: data.length };
  } catch (error) {
    return { error: String(error && error.message ? error.message : error) };
  }
}

function serve(encoder) {
  let pending = Buffer.alloc(0);
  let inlineRequest = null;
  process.stdin.on('data', (chunk) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    for (;;) {
      if (inlineRequest !== null) {
        if (pending.length < inlineRequest.inline) return;
        const bytes = pending.subarray(0, inlineRequest.inline);
        pending = pending.subarray(inlineRequest.inline);
        const reply = answer(encoder, inlineRequest, bytes);
        inlineRequest = null;
        process.stdout.write(JSON.stringify(reply) + '\n');
        continue;
      }
      const newline = pending.indexOf(10);
      if (newline < 0) return;
      const line = pending.subarray(0, newline).toString('utf8');
      pending = pending.subarray(newline + 1);
      let request;
      try {
        request = JSON.parse(line);
      } catch (error) {
        process.stdout.write(JSON.stringify({ error: `bad request line: ${error.message}` }) + '\n');
        continue;
      }
      if (typeof request.inline === 'number') {
        inlineRequest = request;
      } else {
        process.stdout.write(JSON.stringify(answer(encoder, request, null)) + '\n');
      }
    }
  });
  process.stdin.on('end', () => process.exit(0));
}

function main(argv) {
  if (argv.length < 2) {
    process.stderr.write('usage: blob_id.js WASM_PACKAGE_DIR (--serve | FILE...)\n');
    process.exit(2);
  }
  const encoder = loadEncoder(argv[0]);
  if (argv[1] === '--serve') {
    serve(encoder);
    return;
  }
  for (const path of argv.slice(1)) {
    process.stdout.write(`${blobIdOf(encoder, fs.readFileSync(path))}  ${path}\n`);
  }
}

main(process.argv.slice(2));
