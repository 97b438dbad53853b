/**
 * The baseline for the intake benchmark: a bare Fastify route that parses the JSON body and
 * answers 200 without storing anything. Prints its URL, then serves until killed.
 */
import Fastify from 'fastify';

const app = Fastify({ bodyLimit: 64 * 1024 });
app.post('/webhooks/wavoip', async () => ({ received: true }));
const url = await app.listen({ port: 0, host: '127.0.0.1' });
process.stdout.write(`${JSON.stringify({ url })}\n`);
