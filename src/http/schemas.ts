import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyBaseLogger, FastifyInstance, RawReplyDefaultExpression, RawRequestDefaultExpression, RawServerDefault } from 'fastify';
import { Type, type TSchema } from 'typebox';

/**
 * The one way routes declare what they take and answer: TypeBox schemas, which are JSON Schema
 * (Fastify's Ajv validates requests with them, fast-json-stringify writes answers with them,
 * @fastify/swagger describes them in GET /api/openapi.json) and TypeScript types at once.
 */
export type App = FastifyInstance<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, FastifyBaseLogger, TypeBoxTypeProvider>;

/** The one shape of every refusal and failure the service answers. */
export function errorBody(description: string) {
  return Type.Object(
    {
      error: Type.String({ description: 'What was wrong, in words' }),
      field: Type.Optional(Type.String({ description: 'The parameter, header or body field that was refused' })),
    },
    { additionalProperties: false, description },
  );
}

/** A string out of a fixed list, as `{ type: 'string', enum }` (Ajv's message names the list). */
export function stringEnum<const Values extends readonly string[]>(values: Values, options: { description?: string; default?: Values[number] } = {}) {
  return Type.Unsafe<Values[number]>({ type: 'string', enum: [...values], ...options });
}

export function nullable<Schema extends TSchema>(schema: Schema) {
  return Type.Union([schema, Type.Null()]);
}

/** An ISO 8601 time in UTC, as the API writes every time; null when it has not happened. */
export const IsoTime = nullable(Type.String({ format: 'date-time' }));

/** A time the database keeps as epoch milliseconds, as IsoTime writes it. */
export function toIsoTime(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/** A body the server never sends: 204, 304. */
export const NoBody = (description: string) => Type.Unsafe<void>({ type: 'null', description });

/** A body that is not JSON (text, audio, an event stream), described by its media type. */
export function mediaBody(description: string, mediaType: string, schema: TSchema = Type.String()) {
  return Type.Unsafe<unknown>({ description, content: { [mediaType]: { schema } } });
}

/**
 * Answers every route may give: the database out of reach (503, with Retry-After), the service
 * shutting down (503), or a fault of ours (500, details in the log only).
 */
export const SERVER_ERRORS = {
  '5xx': errorBody('The service failed (500), cannot reach its database for now (503, with Retry-After), or is shutting down (503)'),
} as const;

/** A request with a body Fastify parses: refused when it is not JSON, too large, or too deep. */
export const BODY_ERRORS = {
  400: errorBody('The body or a parameter was refused; `field` names it when one is to blame'),
  413: errorBody('The body is larger than 64 KiB'),
  415: errorBody('The body is not application/json'),
} as const;

/** The refusals of the API's access check (src/api/api-auth.ts). */
export const AUTH_ERRORS = {
  401: errorBody('No API token or session, a wrong token, or a session that has expired'),
  429: errorBody('Too many wrong tokens from this address: locked out for the time Retry-After says'),
} as const;

/** Writes made with the session cookie also need the session's CSRF token. */
export const CSRF_ERROR = { 403: errorBody('A write with the session cookie, without its X-CSRF-Token') } as const;

/** Who may call the /api routes: the bearer token, or a dashboard session (GET /api/session). */
export const API_SECURITY: { [scheme: string]: string[] }[] = [{ bearer: [] }, { session: [] }];
