#!/usr/bin/env node
// The service is written in TypeScript and run through tsx, so `npm install && npm start`
// needs no build step and a stack trace points at the source line.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
