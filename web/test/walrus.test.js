// Reads from a hostile aggregator: one that never answers, one that stops mid-body, one
// that sends too much. Each read ends within its stall timeout, its connection cancelled.
// Run: `node --test test/` in web/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readBlob, WalrusReadError } from '../src/walrus.js';
import { TooLargeError } from '../src/hash.js';

const BLOB = 'A'.repeat(43);

/** A server on loopback answering with `handler`; counts requests and their connections
 * closing (a client pool may keep a spare connection that carries no request). */
async function aggregator(handler) {
  const sockets = { opened: 0, closed: 0 };
  const server = createServer((request, response) => {
    sockets.opened++;
    request.socket.on('close', () => sockets.closed++);
    handler(request, response);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  const close = () => {
    server.closeAllConnections();
    return new Promise((resolve) => server.close(resolve));
  };
  return { url, sockets, close };
}

/** Wait (at most 2 s) until every connection the client opened is closed again. */
async function allClosed(sockets) {
  for (let waited = 0; waited < 2000 && sockets.closed < sockets.opened; waited += 50) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return sockets.closed === sockets.opened;
}

test('an aggregator that never answers is abandoned after the stall timeout', async () => {
  const server = await aggregator(() => {});
  try {
    const started = Date.now();
    await assert.rejects(readBlob(server.url, BLOB, { stallMs: 200 }), (error) => error instanceof WalrusReadError && /sent nothing for 0.2 s/.test(error.message));
    assert.ok(Date.now() - started < 5000);
    assert.ok(server.sockets.opened >= 3); // every attempt
    assert.ok(await allClosed(server.sockets)); // and each one cancelled
  } finally {
    await server.close();
  }
});

test('an aggregator that stops mid-body is abandoned too', async () => {
  const server = await aggregator((request, response) => {
    response.writeHead(200, { 'Content-Length': '1000' });
    response.write(Buffer.alloc(10));
  });
  try {
    await assert.rejects(readBlob(server.url, BLOB, { stallMs: 200 }), /sent nothing for 0.2 s/);
    assert.ok(await allClosed(server.sockets));
  } finally {
    await server.close();
  }
});

test('a body over the limit stops the read at once, without retrying', async () => {
  const server = await aggregator((request, response) => {
    response.writeHead(200);
    response.end(Buffer.alloc(4096));
  });
  try {
    await assert.rejects(readBlob(server.url, BLOB, { maxBytes: 100 }), TooLargeError);
    assert.equal(server.sockets.opened, 1);
  } finally {
    await server.close();
  }
});

test('a slow but steady aggregator is not cut off', async () => {
  const server = await aggregator((request, response) => {
    response.writeHead(200);
    let sent = 0;
    const timer = setInterval(() => {
      response.write(Buffer.from('x'));
      if (++sent === 5) {
        clearInterval(timer);
        response.end();
      }
    }, 100);
  });
  try {
    const result = await readBlob(server.url, BLOB, { stallMs: 300 });
    assert.equal(result.size, 5);
  } finally {
    await server.close();
  }
});
