#!/usr/bin/env node
// libuv runs file writes and fsyncs on a pool of 4 threads by default. Downloads fsync their
// recordings there, and every webhook acknowledgement waits on an fsync of the database log
// there too: a larger pool keeps acknowledgements from queueing behind downloads. It must be
// set before the first I/O, hence here.
process.env.UV_THREADPOOL_SIZE ??= '16';

// The service is written in TypeScript and run through tsx, so `npm install && npm start`
// needs no build step and a stack trace points at the source line.
const { register } = await import('tsx/esm/api');
register();
await import('../src/cli/main.ts');
